"""The pip backend: `pip install --dry-run --report` for one target, markers included."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.lock.resolvers.base import (
    Pin,
    Resolution,
    ResolveRequest,
    Runner,
    clean_env,
    failed,
    run_process,
)

# pip evaluates markers against the interpreter running it, whatever --python-version and
# --platform say. This launcher replaces the marker environment pip's vendored `packaging`
# computes with the target's, then runs pip unchanged.
LAUNCHER = '''\
"""Run pip with the marker environment of another interpreter (written by torchenv)."""
import json
import sys

from pip._vendor.packaging import markers

_TARGET = json.loads(sys.argv[1])
markers.default_environment = lambda: dict(_TARGET)

from pip._internal.cli.main import main

sys.exit(main(sys.argv[2:]))
'''


def pip_argv(python: str, launcher: Path, request: ResolveRequest, infile: Path) -> list[str]:
    target = request.target
    argv = [
        python,
        str(launcher),
        json.dumps(target.markers(), sort_keys=True),
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        "-",
        "--quiet",
        "--isolated",  # no pip.conf, no PIP_* variables: no extra index behind our back
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--python-version",
        target.python_minor,
        "--implementation",
        "cp" if target.implementation == "cpython" else "py",
        "--target",
        str(request.workdir / "pip-target"),
        "--index-url",
        request.index_url,
        "-r",
        str(infile),
    ]
    for abi in target.abi_tags:
        argv += ["--abi", abi]
    for platform in target.platform_tags:
        argv += ["--platform", platform]
    argv += ["--cache-dir", str(request.cache_dir)] if request.cache_dir else ["--no-cache-dir"]
    return argv


def parse_report(report: Mapping[str, Any], markers: Mapping[str, str]) -> tuple[Pin, ...]:
    """Pins from pip's installation report (pure; tested on recorded reports)."""
    items = report.get("install")
    if not isinstance(items, list):
        raise ResolutionError(
            "pip's report lists nothing to install",
            hint="run again with TORCHENV_DEBUG=1 and report it",
        )
    names = {str(canonicalize_name(i["metadata"]["name"])) for i in items}
    pins = []
    for item in items:
        meta = item["metadata"]
        name = canonicalize_name(meta["name"])
        url = item.get("download_info", {}).get("url") if item.get("is_direct") else None
        pins.append(
            Pin(
                name,
                meta["version"],
                url,
                _dependencies(meta.get("requires_dist", []), markers, names),
            )
        )
    return tuple(pins)


def _dependencies(
    requires: list[str], markers: Mapping[str, str], resolved: set[str]
) -> tuple[str, ...]:
    out = set()
    for raw in requires:
        try:
            req = Requirement(raw)
            holds = req.marker is None or req.marker.evaluate({**markers, "extra": ""})
        except (InvalidRequirement, InvalidMarker, UndefinedEnvironmentName):
            continue
        name = canonicalize_name(req.name)
        if holds and name in resolved:
            out.add(name)
    return tuple(sorted(out))


@dataclass
class PipResolver:
    """Resolves with `pip install --dry-run --report`, run by the interpreter `python`."""

    runner: Runner = field(default=run_process)
    python: str = sys.executable
    name: str = "pip"

    def unavailable(self) -> str | None:
        if self.python == sys.executable and importlib.util.find_spec("pip") is None:
            return "pip is not installed in torchenv's environment"
        return None

    def prepare(self, cache_dir: Path | None) -> None:
        """Nothing to start ahead: pip has no interpreter cache to fill."""

    def start(self, request: ResolveRequest) -> None:
        """Nothing started early: pip needs the metadata proxy, made when it resolves."""

    def close(self) -> None:
        """Nothing was started early."""

    def resolve(self, request: ResolveRequest) -> Resolution:
        """Resolve with pip; given torchenv's index client, pip reads every wheel's metadata
        through the metadata proxy and downloads no wheel (see metaproxy)."""
        from torchenv.agent.lock.resolvers.metaproxy import proxied

        infile = request.workdir / "requirements.in"
        infile.write_text("\n".join(request.requirements) + "\n", encoding="utf-8")
        launcher = request.workdir / "torchenv_pip.py"
        launcher.write_text(LAUNCHER, encoding="utf-8")
        with proxied(request.client, request.index_url) as index_url:
            through = dataclasses.replace(request, index_url=index_url)
            if index_url != request.index_url:  # stand-ins under the proxy's URLs: no cache
                through = dataclasses.replace(through, cache_dir=None)
            argv = pip_argv(self.python, launcher, through, infile)
            done = self.runner(argv, clean_env(), request.workdir, request.timeout)
        if done.returncode != 0:
            raise failed("pip", done, request.index_url)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise ResolutionError(
                f"pip's report is not JSON ({exc})",
                hint="upgrade pip to 23 or newer (`--report` is needed)",
            ) from exc
        return Resolution("pip", parse_report(report, request.target.markers()))
