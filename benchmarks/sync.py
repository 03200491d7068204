"""Materialization time for one lock: torchenv sync (cold, warm) vs uv pip sync and pip; no-op auto.

Run: /tmp/dev/bin/python benchmarks/sync.py [--runs N] [--torch-mib M]

The lock holds a torch stand-in padded to M MiB plus a few small wheels, served over loopback
HTTP. Every tool creates a fresh environment and installs the same files with hashes checked;
"cold" starts from empty caches, "warm" from the caches the previous run filled. The no-op
`torchenv auto` probes this machine live, finds the host, request and lock unchanged, and stops.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from indexsim.wheels import WheelSpec
from test_sync_helpers import build_lock, plain_spec, torch_spec

from torchenv.agent.host import load_host
from torchenv.agent.pylock import read_pylock

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
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-"))
    host = load_host()
    wheels = work / "lockdir"
    base, stop = serve(wheels / "wheels")
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

    def torchenv_sync(tag: str, cold: bool) -> float:
        prefix = work / f"te-{next(counter)}"
        return timed([[*TORCHENV, "sync", str(lock_path), "--prefix", str(prefix)]],
                     env(tag, cold))  # fmt: skip

    def uv_sync(tag: str, cold: bool) -> float:
        prefix = work / f"uv-{next(counter)}"
        return timed([[UV, "venv", "--quiet", str(prefix)],
                      [UV, "pip", "sync", "--quiet", "--require-hashes", "--python",
                       str(prefix / "bin" / "python"), str(reqs)]], env(tag, cold))  # fmt: skip

    def pip_install(tag: str, cold: bool) -> float:
        prefix = work / f"pip-{next(counter)}"
        return timed([[sys.executable, "-m", "venv", "--without-pip", str(prefix)],
                      [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"),
                       "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                       "--require-hashes", "-r", str(reqs)]], env(tag, cold))  # fmt: skip

    results: dict[str, float] = {}
    for name, fn in (("torchenv", torchenv_sync), ("uv", uv_sync), ("pip", pip_install)):
        for mode in ("cold", "warm"):
            runs = [fn(name, mode == "cold") for _ in range(args.runs)]
            results[f"{name} {mode}"] = statistics.median(runs)
            print(f"{name:9} {mode}: median {results[f'{name} {mode}']:.3f} s over {args.runs}"
                  f" runs ({', '.join(f'{r:.2f}' for r in runs)})", flush=True)  # fmt: skip

    prefix = work / "auto-env"
    auto = [*TORCHENV, "auto", "--json", "--lock", str(lock_path), "--prefix", str(prefix)]
    timed([auto], env("auto", True), cwd=work)  # outside any project
    noop_runs = []
    for _ in range(args.runs * 2):
        start = time.perf_counter()
        done = subprocess.run(auto, env=env("auto", False), capture_output=True, text=True,
                              check=False, cwd=work)  # fmt: skip
        noop_runs.append(time.perf_counter() - start)
        if json.loads(done.stdout).get("action") != "unchanged":
            raise SystemExit(f"auto did work on the second run: {done.stdout}")
    noop = statistics.median(noop_runs)
    stop()
    shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"lock: {len(lock.packages)} wheels, "
          f"{sum(p.wheel.size for p in lock.packages) / 2**20:.0f} MiB")  # fmt: skip
    for mode in ("cold", "warm"):
        te = results[f"torchenv {mode}"]
        print(f"{mode}: torchenv / uv = {te / results[f'uv {mode}']:.2f}x, "
              f"torchenv / pip = {te / results[f'pip {mode}']:.2f}x")  # fmt: skip
    warm_ratio = results["torchenv warm"] / results["uv warm"]
    print(f"warm target (<= 1.2x uv): {'met' if warm_ratio <= 1.2 else 'MISSED'}")
    print(f"no-op auto: median {noop * 1000:.0f} ms over {len(noop_runs)} runs "
          f"(target < 200 ms: {'met' if noop < 0.2 else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
