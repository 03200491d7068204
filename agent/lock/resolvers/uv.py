"""The uv backend: `uv pip compile` for exactly one Python version and platform."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from torchenv.agent.base import toml as tomllib
from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.base.uvbin import find_uv, uv_switched_off
from torchenv.agent.lock.resolvers import uvwarm
from torchenv.agent.lock.resolvers.base import (
    Pin,
    Resolution,
    ResolveRequest,
    Runner,
    WheelRef,
    clean_env,
    failed,
    feed_process,
    run_process,
)
from torchenv.agent.lock.resolvers.target import Target

STDIN = "-"  # `uv pip compile -`: the requirements come on stdin


def compile_argv(uv: str, request: ResolveRequest, infile: Path | str) -> list[str]:
    target = request.target
    options = {
        # uv's interpreter discovery can take seconds (pyenv shims); torchenv's interpreter
        # only hosts the run: the target is --python-version and --python-platform.
        "--python": sys.executable,
        "--python-version": target.python_version,
        "--python-platform": target.uv_platform(),
        "--index-url": request.index_url,
        "--format": "pylock.toml",  # every pin with the wheel's URL, size and hash
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


def parse_pylock_output(text: str, target: Target) -> tuple[Pin, ...]:
    """Pins from `uv pip compile --format pylock.toml` (pure): the target's best wheel each."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ResolutionError(
            f"uv's pylock.toml output is not TOML ({exc})",
            hint="upgrade uv to 0.8.12 or newer (`--format pylock.toml` is needed)",
        ) from exc
    ranks = {tag: i for i, tag in enumerate(target.tags())}
    pins = []
    for package in doc.get("packages", []):
        name = str(canonicalize_name(package["name"]))
        archive = package.get("archive")
        direct = archive.get("url") or archive.get("path") if isinstance(archive, dict) else None
        deps = tuple(
            sorted(
                str(canonicalize_name(d["name"]))
                for d in package.get("dependencies", [])
                if "name" in d
            )
        )
        wheel = _best_wheel(package.get("wheels", []), ranks)
        pins.append(Pin(name, str(package["version"]), direct, deps, wheel))
    return tuple(pins)


def _best_wheel(entries: list[dict[str, Any]], ranks: dict[Tag, int]) -> WheelRef | None:
    best: tuple[int, WheelRef] | None = None
    for entry in entries:
        url = entry.get("url")
        if not isinstance(url, str):
            continue
        filename = unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            continue
        rank = min((ranks[t] for t in tags if t in ranks), default=None)
        if rank is None:
            continue
        sha = entry.get("hashes", {}).get("sha256")
        size = entry.get("size")
        ref = WheelRef(
            filename,
            url,
            size if isinstance(size, int) else None,
            sha.lower() if isinstance(sha, str) else None,
        )
        if best is None or rank < best[0]:
            best = (rank, ref)
    return best[1] if best else None


@dataclass
class UvResolver:
    """Resolves with `uv pip compile`; `prepare` and `start` begin its work before `resolve`."""

    runner: Runner = field(default=run_process)
    binary: str | None = None
    name: str = "uv"
    _warming: Path | None = field(default=None, init=False, repr=False)  # the find's cache
    _warmed_dirs: set[Path] = field(default_factory=set, init=False, repr=False)
    # compiles started early (start), by their argv: the environment each was started with
    _early: dict[tuple[str, ...], tuple[dict[str, str], subprocess.Popen[str]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _early_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def prepare(self, cache_dir: Path | None) -> None:
        """Inspect the interpreter into uv's cache in the background (uvwarm; real runs only:
        a test's runner stands for uv, and uv's default cache is warm from the user's own uv).
        A find `uvwarm.ahead` started there already is the one resolve waits for."""
        uv = self.binary or find_uv()
        if cache_dir is None or cache_dir in self._warmed_dirs or uv is None:
            return
        if self.runner is not run_process or self._warming is not None:
            return
        self._warmed_dirs.add(cache_dir)
        uvwarm.start(uv, cache_dir)
        self._warming = cache_dir

    def _warmed(self) -> None:
        warming, self._warming = self._warming, None
        if warming is not None:
            uvwarm.wait(warming)

    def unavailable(self) -> str | None:
        if self.binary is None and uv_switched_off():
            return "TORCHENV_UV is set and empty, which switches uv off"
        if (self.binary or find_uv()) is None:
            return "uv is not installed (torchenv depends on it: reinstall it, or put uv on PATH)"
        return None

    def start(self, request: ResolveRequest) -> None:
        """Start `uv pip compile -` for this target and index now (real runs only), the
        requirements to come on its stdin: uv's start-up overlaps the lock's reading of the
        index. resolve() feeds the one its request matches; close() ends one left unused."""
        uv = self.binary or find_uv()
        if uv is None or self.runner is not run_process:
            return
        argv, env = compile_argv(uv, request, STDIN), _env(request)
        with self._early_lock:
            if tuple(argv) in self._early:
                return
            with contextlib.suppress(OSError):  # not started: resolve() runs it as ever
                self._early[tuple(argv)] = (env, subprocess.Popen(
                    argv, env=env, cwd=request.workdir, text=True, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                ))  # fmt: skip

    def close(self) -> None:
        with self._early_lock:
            left, self._early = list(self._early.values()), {}
        for _, process in left:
            process.kill()
            process.communicate()

    def resolve(self, request: ResolveRequest) -> Resolution:
        uv = self.binary or find_uv()
        if uv is None:
            raise ResolutionError(
                "uv is not installed",
                hint="reinstall torchenv (it depends on uv), or pass --resolver pip",
            )
        text = "\n".join(request.requirements) + "\n"
        env = _env(request)
        self._warmed()
        argv = compile_argv(uv, request, STDIN)
        with self._early_lock:
            early_env, early = self._early.pop(tuple(argv), (None, None))
        if early is not None and early_env == env:
            done = feed_process(early, argv, text, request.timeout)
        else:
            if early is not None:  # started for another environment: not this one's
                early.kill()
                early.communicate()
            infile = request.workdir / "requirements.in"
            infile.write_text(text, encoding="utf-8")
            argv = compile_argv(uv, request, infile)
            done = self.runner(argv, env, request.workdir, request.timeout)
        if done.returncode != 0:
            raise failed("uv", done, request.index_url)
        return Resolution("uv", parse_pylock_output(done.stdout, request.target))


def _env(request: ResolveRequest) -> dict[str, str]:
    extra = {"UV_NO_PROGRESS": "1"}
    if request.target.os == "macos" and request.target.macos_version:
        extra["MACOSX_DEPLOYMENT_TARGET"] = request.target.macos_version
    env = clean_env(extra)
    if "MACOSX_DEPLOYMENT_TARGET" not in extra:
        env.pop("MACOSX_DEPLOYMENT_TARGET", None)
    return env
