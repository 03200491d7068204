"""Prometheus text exposition and Node Feature Discovery labels, rendered from status data."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from torchenv.agent.daemon.outputs import OutputStatus
from torchenv.agent.daemon.state import EnvState, EnvStatus

NFD_PREFIX = "torchenv.io/"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str | None]) -> str:
    inner = ",".join(f'{k}="{_escape(v or "")}"' for k, v in pairs.items())
    return "{" + inner + "}" if inner else ""


def format_value(value: float) -> str:
    """A sample value as Prometheus reads it (Go's ParseFloat), with every digit kept.

    `%g` keeps six significant digits: a start time 1796163011 became 1.79616e+09.
    """
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)  # the shortest text that reads back as the same float


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str | None], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {format_value(value)}" for labels, value in samples]
    return lines


def render_metrics(
    statuses: Sequence[EnvStatus],
    *,
    version: str,
    started: float,
    fingerprint: str | None,
    reconciles: int,
    ready: bool,
    outputs: Sequence[OutputStatus] = (),
) -> str:
    """The agent's metrics in the Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    lines += _family(
        "torchenv_agent_info",
        "gauge",
        "The running agent.",
        [({"version": version, "host_fingerprint": fingerprint}, 1)],
    )
    lines += _family(
        "torchenv_agent_start_time_seconds",
        "gauge",
        "When the agent started (Unix time).",
        [({}, started)],
    )
    lines += _family(
        "torchenv_agent_ready",
        "gauge",
        "1 once the first reconcile finished.",
        [({}, 1 if ready else 0)],
    )
    lines += _family(
        "torchenv_reconciles_total", "counter", "Reconcile passes run.", [({}, reconciles)]
    )
    lines += _family(
        "torchenv_environment_state",
        "gauge",
        "1 for the state each environment is in.",
        [
            ({"environment": s.name, "state": state.value}, 1 if s.state is state else 0)
            for s in statuses
            for state in EnvState
        ],
    )
    lines += _family(
        "torchenv_environment_info",
        "gauge",
        "The torch build active in each environment.",
        [
            ({"environment": s.name, "backend": s.backend, "torch": s.torch, "prefix": s.prefix}, 1)
            for s in statuses
            if s.fingerprint
        ],
    )
    lines += _family(
        "torchenv_environment_last_verify_timestamp_seconds",
        "gauge",
        "When the active environment last verified (Unix time).",
        [({"environment": s.name}, s.last_verify) for s in statuses if s.last_verify is not None],
    )
    lines += _family(
        "torchenv_environment_consecutive_failures",
        "gauge",
        "Failed provisions since the last success.",
        [({"environment": s.name}, s.failures) for s in statuses],
    )
    lines += _family(
        "torchenv_environment_provisions_total",
        "counter",
        "Provisions run, by result.",
        [
            ({"environment": s.name, "result": result}, s.provisions.get(result, 0))
            for s in statuses
            for result in ("ok", "failed")
        ],
    )
    lines += _family(
        "torchenv_output_ok",
        "gauge",
        "1 when the output file's last write succeeded, 0 when it failed.",
        [
            ({"output": o.name, "path": o.path}, 1 if o.ok else 0)
            for o in outputs
            if o.ok is not None
        ],
    )
    lines += _family(
        "torchenv_output_last_success_timestamp_seconds",
        "gauge",
        "When the output file was last written (Unix time).",
        [({"output": o.name}, o.last_success) for o in outputs if o.last_success is not None],
    )
    return "\n".join(lines) + "\n"


NFD_KEYS = ("backend", "torch")
NAME_MAX = 63  # a label's name after the prefix (Kubernetes qualified names)
_SEGMENT_MAX = NAME_MAX - 1 - max(len(k) for k in NFD_KEYS)  # room for `.backend`
_HASHED = 10  # hex digits of sha256 kept in a shortened segment


def _label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:NAME_MAX]
    return cleaned.strip("_.-")


def env_segment(name: str) -> str:
    """The part of an environment's label names that names it: `<segment>.backend`.

    Environment names may be 63 characters and `.backend` must fit beside them, so a name
    longer than the room left keeps its head and ends in `-` plus a hash of the whole name.
    Deterministic; names that fit are used as they are (config.py refuses two environments
    whose segments would coincide).
    """
    if len(name) <= _SEGMENT_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASHED]
    return f"{name[: _SEGMENT_MAX - _HASHED - 1]}-{digest}"


def rfc3339(timestamp: float) -> str:
    """UTC, whole seconds, `Z`: what Go's time.RFC3339 layout parses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def render_nfd(statuses: Sequence[EnvStatus], *, expires: float | None = None) -> str:
    """NFD feature lines: the first environment unqualified, every one by name.

    With `expires`, an `# +expiry-time=` directive comes before every label, so NFD drops
    them when the agent stops rewriting the file (it died, or its node left the fleet).
    """
    lines = ["# written by torchenv agent; one label per line"]
    if expires is not None:
        lines.append(f"# +expiry-time={rfc3339(expires)}")
    for index, status in enumerate(statuses):
        if status.fingerprint is None or status.backend is None:
            continue
        values = {"backend": status.backend, "torch": status.torch}
        for key, value in values.items():
            if value is None or not _label_value(value):
                continue
            if index == 0:
                lines.append(f"{NFD_PREFIX}{key}={_label_value(value)}")
            lines.append(f"{NFD_PREFIX}{env_segment(status.name)}.{key}={_label_value(value)}")
    return "\n".join(lines) + "\n"
