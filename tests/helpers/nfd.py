"""Node Feature Discovery's rules for feature files and Kubernetes' rules for labels, as checks.

Written from NFD's local source (`source/local`, shared/FACTS.md section 7) and the Kubernetes
label syntax, independently of the agent's code, so that a test can hold the agent's output
(and any manifest's selectors) to them. Each check returns the problems it found; none means
valid.

- A feature file lives in `features.d/` and is at most 64 KiB; a name starting with `.` is
  ignored (so writers use dot files as temporaries).
- Lines: `#` comments; directives `# +expiry-time=<RFC3339>`, `# +no-label`, `# +no-feature`
  (any other `# +...` is an error to NFD); everything else is `name[=value]` (no value:
  "true"). An expiry applies to the lines after it, until the next expiry directive.
- A label name is `prefix/name`: the prefix a DNS subdomain (lowercase, at most 253), the
  name at most 63 characters of `[A-Za-z0-9-_.]`, alphanumeric at both ends. Unprefixed names
  get NFD's own prefix (deprecated). `kubernetes.io` and `k8s.io` (and their subdomains) are
  denied, except NFD's own `feature.node.kubernetes.io` and `profile.node.kubernetes.io`.
- A label value is empty or at most 63 characters of the same set, alphanumeric at both ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MAX_FILE_BYTES = 65536
NAME_MAX = 63
PREFIX_MAX = 253
DIRECTIVES = ("expiry-time", "no-label", "no-feature")
NFD_NAMESPACES = ("feature.node.kubernetes.io", "profile.node.kubernetes.io")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})"
)  # Go's time.RFC3339 as time.Parse reads it: a fraction may follow the seconds


@dataclass(frozen=True)
class FeatureLine:
    name: str
    value: str
    expires: datetime | None  # the expiry directive in force for this line, if any
    number: int  # 1-based line number


def label_name_problems(name: str) -> list[str]:
    """Problems with `name` as a node label's name (Kubernetes qualified name + NFD's rules)."""
    prefix, slash, local = name.rpartition("/")
    problems = []
    if not slash:
        problems.append(f"{name!r} has no prefix (NFD would add feature.node.kubernetes.io/)")
    elif not prefix:
        problems.append(f"{name!r} has an empty prefix")
    else:
        if len(prefix) > PREFIX_MAX or not all(_DNS_LABEL.fullmatch(p) for p in prefix.split(".")):
            problems.append(f"prefix {prefix!r} of {name!r} is not a DNS subdomain")
        denied = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
        if denied and prefix not in NFD_NAMESPACES:
            problems.append(f"prefix {prefix!r} of {name!r} is a namespace NFD denies")
    if len(local) > NAME_MAX:
        problems.append(f"{name!r}: {len(local)} characters after the prefix (at most {NAME_MAX})")
    if not _NAME.fullmatch(local):
        problems.append(f"{name!r}: the name must be [A-Za-z0-9-_.], alphanumeric at both ends")
    return problems


def label_value_problems(value: str) -> list[str]:
    if value == "":
        return []
    problems = []
    if len(value) > NAME_MAX:
        problems.append(f"value {value!r}: {len(value)} characters (at most {NAME_MAX})")
    if not _NAME.fullmatch(value):
        problems.append(f"value {value!r}: must be [A-Za-z0-9-_.], alphanumeric at both ends")
    return problems


def parse_rfc3339(text: str) -> datetime | None:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    offset = timedelta(0)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None


def parse_feature_file(text: str) -> tuple[list[FeatureLine], list[str]]:
    """The label lines of a feature file and the problems NFD would have reading it."""
    problems: list[str] = []
    lines: list[FeatureLine] = []
    expires: datetime | None = None
    if len(text.encode()) > MAX_FILE_BYTES:
        problems.append(f"{len(text.encode())} bytes: NFD ignores files over {MAX_FILE_BYTES}")
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if not line.startswith("# +"):
                continue
            key, _, value = line[3:].partition("=")
            if key not in DIRECTIVES:
                problems.append(f"line {number}: unknown directive {key!r}")
            elif key == "expiry-time":
                expires = parse_rfc3339(value.strip())
                if expires is None:
                    problems.append(f"line {number}: {value!r} is not an RFC3339 time")
            continue
        name, sep, value = line.partition("=")
        lines.append(FeatureLine(name, value if sep else "true", expires, number))
        problems += [f"line {number}: {p}" for p in label_name_problems(name)]
        problems += [f"line {number}: {p}" for p in label_value_problems(value if sep else "")]
    return lines, problems


def live_labels(lines: list[FeatureLine], now: datetime) -> dict[str, str]:
    """The labels NFD would publish at `now` (an expired line is skipped, later lines win)."""
    return {line.name: line.value for line in lines if line.expires is None or line.expires >= now}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
