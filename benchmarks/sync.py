"""Materialization time for one lock: torchenv sync (cold, warm) vs uv pip sync and pip; no-op auto.

Run: .venv-dev/bin/python benchmarks/sync.py [--runs N] [--torch-mib M | --real-torch]

The lock holds a torch stand-in padded to M MiB plus a few small wheels (or, with
--real-torch, the real CPU torch wheel and its dependencies found through pip's
configuration), served over loopback HTTP. Every tool creates a fresh environment and
installs the same files with hashes checked; "cold" starts from empty caches, "warm" from
the caches the previous run filled.

torchenv installs with link-mode auto: copy-on-write clones where the file system has them,
else copies, so environments share no files with each other or the installer's cache (the
way back stays intact). "torchenv hardlink" is link-mode hardlink, uv's own default here;
"uv copy" is uv with --link-mode=copy, the like-for-like peer of torchenv's default.

The no-op `torchenv auto` probes this machine live, finds the host, request and lock
unchanged, stats the environment's runtime files against the manifest written at sync time
(the check that notices damage), and stops; it is compared with `python -c pass`. The cost of
that check and of the full RECORD hash check (verify, the agent) is measured in process.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from helpers.locks import build_lock, plain_spec, torch_spec
from indexsim.wheels import WheelSpec

from torchenv.agent.env import integrity
from torchenv.agent.host.source import load_host
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock, read_pylock, write_pylock

BIN = Path(sys.executable).parent
UV = str(BIN / "uv") if (BIN / "uv").exists() else shutil.which("uv") or "uv"
TORCHENV = [sys.executable, "-m", "torchenv.agent"]


def serve(directory: Path) -> tuple[str, Callable[[], None]]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def timed(argv_list: list[list[str]], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    for argv in argv_list:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=cwd)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-mib", type=int, default=200)
    parser.add_argument("--real-torch", action="store_true", help="the real CPU torch wheel")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-"))
    host = load_host()
    wheels = work / "lockdir"
    (wheels / "wheels").mkdir(parents=True)
    base, stop = serve(wheels / "wheels")
    if args.real_torch:
        lock_path = real_torch_lock(wheels, host, base)
    else:
        torch = torch_spec()
        padded = WheelSpec(torch.name, torch.version, torch.tag, files=torch.files,
                           padding=args.torch_mib << 20)  # fmt: skip
        specs = [padded, *(plain_spec(n) for n in ("filelock", "jinja2", "sympy", "networkx"))]
        lock_path = build_lock(wheels, specs, host=host, url_for=lambda p: f"{base}/{p.name}")
    lock = read_pylock(lock_path)
    reqs = work / "requirements.txt"
    reqs.write_text("".join(f"{p.name} @ {p.wheel.url} --hash=sha256:{p.wheel.sha256}\n"
                            for p in lock.packages))  # fmt: skip

    def env(tag: str, cold: bool) -> dict[str, str]:
        caches = work / f"cache-{tag}"
        if cold:
            shutil.rmtree(caches, ignore_errors=True)
        # An installed torchenv runs from bytecode; a source checkout under
        # PYTHONDONTWRITEBYTECODE=1 would recompile itself on every run, so give it a cache.
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return {**base, "PYTHONPYCACHEPREFIX": str(work / "pycache"),
                "TORCHENV_CACHE_DIR": str(caches / "torchenv"),
                "UV_CACHE_DIR": str(caches / "uv"), "PIP_CACHE_DIR": str(caches / "pip"),
                "TORCHENV_USER_CONFIG": str(work / "none.toml")}  # fmt: skip

    counter = iter(range(10**6))

    def torchenv_sync(tag: str, cold: bool, link: str = "auto") -> float:
        prefix = work / f"te-{next(counter)}"
        return timed([[*TORCHENV, "sync", str(lock_path), "--prefix", str(prefix)]],
                     {**env(tag, cold), "TORCHENV_LINK_MODE": link})  # fmt: skip

    def uv_sync(tag: str, cold: bool, link: str | None = None) -> float:
        prefix = work / f"uv-{next(counter)}"
        mode = [f"--link-mode={link}"] if link else []
        return timed([[UV, "venv", "--quiet", str(prefix)],
                      [UV, "pip", "sync", "--quiet", "--require-hashes", *mode, "--python",
                       str(prefix / "bin" / "python"), str(reqs)]], env(tag, cold))  # fmt: skip

    def pip_install(tag: str, cold: bool) -> float:
        prefix = work / f"pip-{next(counter)}"
        return timed([[sys.executable, "-m", "venv", "--without-pip", str(prefix)],
                      [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"),
                       "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                       "--require-hashes", "-r", str(reqs)]], env(tag, cold))  # fmt: skip

    results: dict[str, float] = {}
    tools: list[tuple[str, Callable[[str, bool], float]]] = [
        ("torchenv", torchenv_sync),
        ("torchenv hardlink", lambda tag, cold: torchenv_sync(tag, cold, "hardlink")),
        ("uv", uv_sync),
        ("uv copy", lambda tag, cold: uv_sync(tag, cold, "copy")),
        ("pip", pip_install),
    ]
    for name, fn in tools:
        for mode in ("cold", "warm"):
            runs = [fn(name, mode == "cold") for _ in range(args.runs)]
            results[f"{name} {mode}"] = statistics.median(runs)
            print(f"{name:17} {mode}: median {results[f'{name} {mode}']:.3f} s over {args.runs}"
                  f" runs ({', '.join(f'{r:.2f}' for r in runs)})", flush=True)  # fmt: skip

    noop = noop_figures(lock_path, work, env, args.runs)
    stop()
    shutil.rmtree(work, ignore_errors=True)
    report(results, noop, lock)


def noop_figures(
    lock_path: Path, work: Path, env: Callable[[str, bool], dict[str, str]], runs: int
) -> dict[str, float]:
    """No-op auto against `python -c pass`, and the file checks' own cost, in seconds."""
    prefix = work / "auto-env"
    auto = [*TORCHENV, "auto", "--json", "--lock", str(lock_path), "--prefix", str(prefix)]
    timed([auto], env("auto", True), cwd=work)  # outside any project
    noop_runs, bare = [], []
    for _ in range(runs * 2):
        start = time.perf_counter()
        done = subprocess.run(auto, env=env("auto", False), capture_output=True, text=True,
                              check=False, cwd=work)  # fmt: skip
        noop_runs.append(time.perf_counter() - start)
        if json.loads(done.stdout).get("action") != "unchanged":
            raise SystemExit(f"auto did work on the second run: {done.stdout}")
        bare.append(timed([[sys.executable, "-c", "pass"]], env("auto", False)))
    env_dir = prefix.resolve()
    quick = [_seconds(lambda: integrity.quick_check(env_dir)) for _ in range(9)]
    return {
        "noop": statistics.median(noop_runs),
        "bare": statistics.median(bare),
        "quick": statistics.median(quick),
        "full": _seconds(lambda: integrity.full_check(env_dir)),
        "files": sum(len(e) for groups in _manifest(env_dir).values() for e in groups.values()),
        "dists": len(_manifest(env_dir)),
    }


def report(results: dict[str, float], noop: dict[str, float], lock: PyLock) -> None:
    print()
    print(f"lock: {len(lock.packages)} wheels, "
          f"{sum(p.wheel.size for p in lock.packages) / 2**20:.0f} MiB")  # fmt: skip
    for mode in ("cold", "warm"):
        te = results[f"torchenv {mode}"]
        print(f"{mode}: torchenv / uv = {te / results[f'uv {mode}']:.2f}x, "
              f"torchenv / uv copy = {te / results[f'uv copy {mode}']:.2f}x, "
              f"torchenv hardlink / uv = "
              f"{results[f'torchenv hardlink {mode}'] / results[f'uv {mode}']:.2f}x, "
              f"torchenv / pip = {te / results[f'pip {mode}']:.2f}x")  # fmt: skip
    print(f"no-op auto: median {noop['noop'] * 1000:.0f} ms; python -c pass "
          f"{noop['bare'] * 1000:.0f} ms; ratio {noop['noop'] / noop['bare']:.2f}x")  # fmt: skip
    print(f"no-op file check: {noop['quick'] * 1000:.1f} ms for {noop['files']:.0f} files of "
          f"{noop['dists']:.0f} distributions; full RECORD hash check "
          f"{noop['full']:.2f} s")  # fmt: skip


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _manifest(env_dir: Path) -> dict[str, dict[str, list[object]]]:
    files: dict[str, dict[str, list[object]]] = json.loads(
        (env_dir / integrity.MANIFEST).read_text()
    )["files"]
    return files


def real_torch_lock(directory: Path, host: object, base: str) -> Path:
    """A lock of this machine's real CPU torch wheel and its dependencies (pip's config)."""
    import hashlib

    from test_e2e_auto import real_torch_catalog

    found = real_torch_catalog()
    if found is None:
        raise SystemExit("pip's configuration offers no CPU torch wheel for this interpreter")
    _, paths = found
    packages = []
    for filename, path in paths.items():
        served = directory / "wheels" / filename
        served.symlink_to(path)
        data = path.read_bytes()
        name, version = filename.split("-")[:2]
        packages.append(LockedPackage(
            name=name.lower().replace("_", "-"), version=version, index=base,
            wheel=LockedWheel(filename, f"{base}/{filename}", len(data),
                              hashlib.sha256(data).hexdigest()),
        ))  # fmt: skip
    table = {
        "torchenv-version": "0.1.0",
        "fingerprint": host.fingerprint(),  # type: ignore[attr-defined]
        "target": host.target_facts(),
        "backend": "cpu",  # type: ignore[attr-defined]
        "python": host.python.minor,
        "requirements": ["torch"],
    }  # type: ignore[attr-defined]
    out = directory / "pylock.toml"
    write_pylock(out, PyLock(packages=tuple(packages), tool_torchenv=table))
    return out


if __name__ == "__main__":
    main()
