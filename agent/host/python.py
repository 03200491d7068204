"""`--python`: a version or an interpreter, turned into the target's Python facts."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import HostError

if TYPE_CHECKING:
    from torchenv.probes.report import PythonReport

PYTHON_VERSION = re.compile(r"(?:cpython-?|cp)?(\d+)\.(\d+)(\.\d+)?(t|\+freethreaded)?", re.I)


PYTHON_HINT = (
    "give a version such as 3.12 or 3.13t (free-threaded), or an interpreter: a path such as "
    "/usr/bin/python3 or a name on PATH such as python3.12"
)


# Runs in the interpreter named by --python; stdlib only (it may have nothing installed).
INTERPRETER_SCRIPT = """\
import json, platform, sys, sysconfig
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": sys.implementation.name,
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "system": platform.system(), "machine": platform.machine(),
    "libc": list(platform.libc_ver()), "mac": platform.mac_ver()[0],
    "executable": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
}))
"""


@dataclass(frozen=True)
class PythonVersion:
    """A target Python given as a version: `3.12`, `3.12.4`, `3.13t` (free-threaded)."""

    version: str
    free_threaded: bool


def parse_python_version(text: str) -> PythonVersion | None:
    """`3.13t` -> 3.13 free-threaded; None when `text` is no version (maybe an interpreter).
    HostError for a version too vague to target (`3`)."""
    value = text.strip()
    if re.fullmatch(r"\d+t?", value):
        raise HostError(
            f"--python {text!r} names no minor version, so it describes no target",
            hint=PYTHON_HINT,
        )
    match = PYTHON_VERSION.fullmatch(value)
    if match is None:
        return None
    version = f"{match[1]}.{match[2]}{match[3] or ''}"
    return PythonVersion(version, free_threaded=match[4] is not None)


def target_python(
    text: str,
    *,
    os_name: str,
    arch: str,
    libc_version: str | None,
    macos_version: str | None,
    timeout: float = 30.0,
) -> PythonReport:
    """The target interpreter `--python` names: a version (described) or an interpreter (asked
    for its version, free-threading and platform, as uv does). HostError when it is neither."""
    from torchenv.probes import python as python_probe

    wanted = parse_python_version(text)
    if wanted is not None:
        return python_probe.describe(
            wanted.version,
            os_name=os_name,
            arch=arch,
            libc_version=libc_version,
            macos_version=macos_version,
            free_threaded=wanted.free_threaded,
        )
    return probe_interpreter(text, timeout=timeout)


def find_interpreter_path(text: str) -> Path | None:
    """`text` as an executable: a path (absolute, relative or ~), else a name on PATH."""
    import shutil

    value = os.path.expanduser(text.strip())
    if not value:
        return None
    if os.sep in value or (os.altsep and os.altsep in value) or value.startswith("."):
        path = Path(value)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which(value)
    return Path(found) if found else None


def probe_interpreter(text: str, *, timeout: float = 30.0) -> PythonReport:
    """Run the interpreter `text` names and describe it (its tags follow from its facts)."""
    import subprocess

    path = find_interpreter_path(text)
    if path is None:
        raise HostError(
            f"--python {text!r} is neither a Python version nor an interpreter here",
            hint=PYTHON_HINT,
        )
    try:
        done = subprocess.run(
            [str(path), "-I", "-c", INTERPRETER_SCRIPT],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        facts = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        facts = None
    if not isinstance(facts, dict) or not isinstance(facts.get("version"), str):
        raise HostError(
            f"--python {text!r}: {path} is not a Python interpreter that runs here",
            hint=PYTHON_HINT,
        )
    return interpreter_report(facts)


def interpreter_report(facts: dict[str, Any]) -> PythonReport:
    """A PythonReport from INTERPRETER_SCRIPT's answer (pure)."""
    from torchenv.probes import python as python_probe
    from torchenv.probes.cpu import normalise_arch
    from torchenv.probes.system import os_name as os_of

    kind = os_of(str(facts.get("system") or ""))
    libc = facts.get("libc") or ["", ""]
    described = python_probe.describe(
        str(facts["version"]),
        os_name=kind,
        arch=normalise_arch(str(facts.get("machine") or ""), kind),
        libc_version=str(libc[1]) if kind == "linux" and libc and libc[0] == "glibc" else None,
        macos_version=str(facts.get("mac") or "") or None,
        free_threaded=bool(facts.get("free_threaded")),
    )
    prefix, base = facts.get("prefix"), facts.get("base_prefix")
    return dataclasses.replace(
        described,
        implementation=str(facts.get("implementation") or "cpython"),
        executable=str(facts.get("executable") or "") or None,
        prefix=str(prefix) if prefix else None,
        is_virtualenv=bool(prefix and base and prefix != base),
    )
