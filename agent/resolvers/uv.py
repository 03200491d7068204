"""The uv backend: `uv pip compile` for exactly one Python version and platform."""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from torchenv.agent.resolvers.base import (
    Pin,
    Resolution,
    ResolveRequest,
    Runner,
    clean_env,
    failed,
    run_process,
)

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*"
    r"(?:==\s*(?P<version>\S+)|@\s*(?P<url>\S+))\s*(?:#\s*via\s+(?P<via>.*))?$"
)
_VERSION_IN_WHEEL = re.compile(r"/[^/-]+-(?P<version>[^-/]+)-[^/]+\.whl$")


def find_uv() -> str | None:
    """The uv binary: the `uv` package's own, else one on PATH."""
    try:
        import uv  # the PyPI package ships the binary and finds it

        found: str = uv.find_uv_bin()
        return found
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def compile_argv(uv: str, request: ResolveRequest, infile: Path) -> list[str]:
    target = request.target
    options = {
        # uv's interpreter discovery can take seconds (pyenv shims); torchenv's interpreter
        # only hosts the run: the target is --python-version and --python-platform.
        "--python": sys.executable,
        "--python-version": target.python_version,
        "--python-platform": target.uv_platform(),
        "--index-url": request.index_url,
        "--annotation-style": "line",
        "--only-binary": ":all:",
        "--color": "never",
    }
    if request.cache_dir is not None:
        options["--cache-dir"] = str(request.cache_dir)
    flags = [
        "--no-config",  # uv.toml / pyproject [tool.uv] must not add indexes or sources
        "--no-python-downloads",
        "--no-header",
        "--quiet",
    ]
    return [
        uv,
        "pip",
        "compile",
        str(infile),
        *flags,
        *(part for pair in options.items() for part in pair),
    ]


def parse_compile_output(text: str) -> tuple[Pin, ...]:
    """Pins from `uv pip compile --annotation-style line` output (pure; tested on recordings)."""
    entries: list[tuple[str, str, str | None, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = _PIN.match(line)
        if not match:
            continue
        name = str(canonicalize_name(match["name"]))
        url = match["url"]
        version = match["version"] or _version_from_url(url or "")
        via = [
            str(canonicalize_name(v.strip()))
            for v in (match["via"] or "").split(",")
            if v.strip() and not v.strip().startswith("-")
        ]
        entries.append((name, version, url, via))
    depends: dict[str, set[str]] = {name: set() for name, *_ in entries}
    for name, _, _, via in entries:
        for parent in via:
            depends.setdefault(parent, set()).add(name)
    return tuple(
        Pin(name, version, url, tuple(sorted(depends.get(name, ()))))
        for name, version, url, _ in entries
    )


def _version_from_url(url: str) -> str:
    from urllib.parse import unquote

    match = _VERSION_IN_WHEEL.search(unquote(url))
    return match["version"] if match else ""


@dataclass
class UvResolver:
    runner: Runner = field(default=run_process)
    binary: str | None = None
    name: str = "uv"

    def unavailable(self) -> str | None:
        if (self.binary or find_uv()) is None:
            return "uv is not installed (install torchenv[uv], or put uv on PATH)"
        return None

    def resolve(self, request: ResolveRequest) -> Resolution:
        uv = self.binary or find_uv()
        if uv is None:
            from torchenv.agent.errors import ResolutionError

            raise ResolutionError(
                "uv is not installed", hint="install torchenv[uv], or pass --resolver pip"
            )
        infile = request.workdir / "requirements.in"
        infile.write_text("\n".join(request.requirements) + "\n", encoding="utf-8")
        extra = {"UV_NO_PROGRESS": "1"}
        if request.target.os == "macos" and request.target.macos_version:
            extra["MACOSX_DEPLOYMENT_TARGET"] = request.target.macos_version
        env = clean_env(extra)
        if "MACOSX_DEPLOYMENT_TARGET" not in extra:
            env.pop("MACOSX_DEPLOYMENT_TARGET", None)
        done = self.runner(compile_argv(uv, request, infile), env, request.workdir, request.timeout)
        if done.returncode != 0:
            raise failed("uv", done)
        return Resolution("uv", parse_compile_output(done.stdout))
