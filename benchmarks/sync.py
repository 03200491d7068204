"""Cold and warm sync of one lock: the whole `torchenv sync` against the whole uv equivalent.

Run: .venv-dev/bin/python benchmarks/sync.py [--torchenv PATH] [--runs N] [--new-path]
                                             [--torch-mib M | --real-torch]

PATH is the `torchenv` console script to time (default: the one beside this interpreter);
time an installed one (`pip install .` into a scratch venv, bytecode compiled), as users
have it. Both sides run the same lock, served by the same loopback HTTP server, in the same
run, taking turns (torchenv, uv, uv copy, torchenv hardlink, torchenv, ...):

- torchenv: `torchenv sync LOCK --prefix P`, all of it: the live host probe, the target
  check, fetching into its wheel store (sha256 checked), the new environment beside the
  active one (made in process by the standard library's venv), the install (link-mode auto:
  copy-on-write clones where the file system has them, else copies; environments share no
  inodes with the caches or each other),
  the stat manifest, verification (the new interpreter imports torch and computes) and the
  atomic switch. "torchenv hardlink" is link-mode hardlink (files shared with uv's cache).
- uv: `uv venv --python PY P && uv pip sync --python P/bin/python LOCK`, PY being the
  interpreter torchenv builds its environments from; uv checks the lock's hashes and links
  from its cache in its default mode (hardlink on Linux); "uv copy" adds --link-mode=copy,
  the like-for-like peer of torchenv's default. The uv is the one the torchenv install runs.

"cold" empties the tool's caches before each run; "warm" keeps the ones the runs before
filled. Every run builds a fresh environment (deleted afterwards, untimed), at one path per
tool, as a project's `.venv` is made again where it was; with --new-path each run's is a
new directory instead (uv then asks each new interpreter afresh, on either side). The lock
holds a torch stand-in padded to M MiB plus four small wheels, or with --real-torch the
machine's real CPU torch wheel and its dependencies, found through pip's configuration.
Printed: medians, each run, the ratios, and torchenv's own verify seconds (from its --json)
with the median of the runs less them: uv verifies nothing.
Target (issue 13): cold and warm sync <= 1.0x uv on the same lock.
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

from _common import use_test_helpers

use_test_helpers()

from helpers.locks import build_lock, lock_wheels, plain_spec, torch_spec
from indexsim.wheels import WheelSpec

from torchenv.agent.host.source import load_host


def serve(directory: Path) -> tuple[str, Callable[[], None]]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def make_lock(work: Path, base: str, args: argparse.Namespace) -> Path:
    served = work / "lockdir" / "wheels"
    served.mkdir(parents=True)
    host = load_host()
    if not args.real_torch:
        torch = torch_spec()
        padded = WheelSpec(torch.name, torch.version, torch.tag, files=torch.files,
                           padding=args.torch_mib << 20)  # fmt: skip
        specs = [padded, *(plain_spec(n) for n in ("filelock", "jinja2", "sympy", "networkx"))]
        return build_lock(served.parent, specs, host=host, url_for=lambda p: f"{base}/{p.name}")
    from helpers.realtorch import real_torch_catalog

    found = real_torch_catalog()
    if found is None:
        raise SystemExit("pip's configuration offers no CPU torch wheel for this interpreter")
    wheels = []
    for filename, path in found[1].items():
        (served / filename).symlink_to(path)
        name, version = filename.split("-")[:2]
        wheels.append((name.lower().replace("_", "-"), version, served / filename))
    return lock_wheels(served.parent, wheels, host=host, url_for=lambda p: f"{base}/{p.name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchenv", default=str(Path(sys.executable).parent / "torchenv"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-mib", type=int, default=100)
    parser.add_argument("--real-torch", action="store_true", help="the real CPU torch wheel")
    parser.add_argument("--new-path", action="store_true", help="a new prefix for every run")
    args = parser.parse_args()
    exe = Path(args.torchenv)
    python = str(exe.parent / "python")
    uv = str(exe.parent / "uv") if (exe.parent / "uv").exists() else shutil.which("uv") or "uv"

    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-sync-"))
    base, stop = serve(work / "lockdir" / "wheels")
    lock = make_lock(work, base, args)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    counter = iter(range(10**6))
    verify: list[float] = []

    def env(tag: str, cold: bool) -> dict[str, str]:
        caches = work / f"cache-{tag}"
        if cold:
            shutil.rmtree(caches, ignore_errors=True)
        return {**clean, "TORCHENV_CACHE_DIR": str(caches / "torchenv"),
                "UV_CACHE_DIR": str(caches / "uv"),
                "TORCHENV_USER_CONFIG": str(work / "none.toml")}  # fmt: skip

    te_sync = [[str(exe), "sync", str(lock), "--json", "--prefix", "PREFIX"]]

    def uv_sync(*mode: str) -> list[list[str]]:
        return [[uv, "venv", "--quiet", "--no-config", "--python", python, "PREFIX"],
                [uv, "pip", "sync", "--quiet", "--no-config", *mode, "--python",
                 "PREFIX/bin/python", str(lock)]]  # fmt: skip

    tools = {
        "torchenv": (te_sync, {"TORCHENV_LINK_MODE": "auto"}),
        "uv": (uv_sync(), {}),
        "uv copy": (uv_sync("--link-mode=copy"), {}),
        "torchenv hardlink": (te_sync, {"TORCHENV_LINK_MODE": "hardlink"}),
    }

    def once(name: str, cold: bool) -> float:
        argvs, extra = tools[name]
        slug = name.replace(" ", "-")
        prefix = work / (f"env-{next(counter)}" if args.new_path else f"env-{slug}")
        environ = {**env(name, cold), **extra}
        start = time.perf_counter()
        outs = [run([a.replace("PREFIX", str(prefix)) for a in argv], environ, work)
                for argv in argvs]  # fmt: skip
        seconds = time.perf_counter() - start
        if name == "torchenv":
            verify.append(json.loads(outs[0])["seconds"].get("verify", 0.0))
        if prefix.is_symlink():  # torchenv's prefix links into its home beside it
            prefix.unlink()
        shutil.rmtree(prefix, ignore_errors=True)
        shutil.rmtree(prefix.with_name(prefix.name + ".torchenv"), ignore_errors=True)
        return seconds

    results: dict[str, list[float]] = {}
    for mode in ("cold", "warm"):
        del verify[:]
        if mode == "warm":
            for name in tools:
                once(name, False)  # the caches the cold runs left, whatever their order
        for _ in range(args.runs):
            for name in tools:
                results.setdefault(f"{name} {mode}", []).append(once(name, mode == "cold"))
        results[f"verify {mode}"] = list(verify)
    stop()
    shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    what = "the real CPU torch" if args.real_torch else f"a {args.torch_mib} MiB torch stand-in"
    where = "a new prefix each run" if args.new_path else "one prefix path per tool"
    print(f"lock: {what}; {args.runs} runs each, in turns, {where}; medians in seconds")
    median = {k: statistics.median(v) for k, v in results.items()}
    for key, runs in results.items():
        if not key.startswith("verify"):
            print(f"  {key:22} {median[key]:6.3f}  ({', '.join(f'{r:.2f}' for r in runs)})")
    for mode in ("cold", "warm"):
        te, bare = median[f"torchenv {mode}"], median[f"verify {mode}"]
        print(f"{mode}: torchenv / uv = {te / median[f'uv {mode}']:.2f}x, "
              f"torchenv / uv copy = {te / median[f'uv copy {mode}']:.2f}x, "
              f"torchenv hardlink / uv = "
              f"{median[f'torchenv hardlink {mode}'] / median[f'uv {mode}']:.2f}x; "
              f"torchenv's verify {bare:.3f} s, without it {te - bare:.3f} s = "
              f"{(te - bare) / median[f'uv copy {mode}']:.2f}x uv copy "
              f"(target <= 1.0x)")  # fmt: skip


if __name__ == "__main__":
    main()
