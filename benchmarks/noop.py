"""No-op `torchenv auto torch` (host, request and lock unchanged) against `python -c pass`.

Run: .venv-dev/bin/python benchmarks/noop.py [--torchenv PATH] [--runs N] [--files N]

PATH is the `torchenv` console script to time (default: the one beside this interpreter);
measure an installed one (`pip install .` into a scratch venv) with bytecode written, as
users have it. The floor is that console script's own interpreter running `python -c pass`,
timed in the same run, alternating with torchenv. A lock of a torch stand-in with N small
files and filelock (file:// wheels, no network) is synced once by `auto`; every later run
is the no-op: the fast check of agent/cli/fastpath.py when the stamp holds, else the full path
(probe, compare, stat the runtime files). `--full` times the full path too
(TORCHENV_NO_FASTPATH=1). Target (issue 13): no-op auto <= 2x `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import use_test_helpers

use_test_helpers()

from helpers.locks import build_lock, plain_spec
from indexsim.catalog import torch_stub
from indexsim.wheels import WheelSpec

from torchenv.agent.host.source import load_host


def _once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchenv", default=str(Path(sys.executable).parent / "torchenv"))
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--files", type=int, default=2000, help="files in the torch stand-in")
    parser.add_argument("--full", action="store_true", help="time the full no-op path too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    exe = Path(args.torchenv)
    python = str(exe.parent / "python")

    work = Path(tempfile.mkdtemp(prefix="torchenv-noop-"))
    files = torch_stub("2.13.0+cpu", None, ["sm_90"])
    files.update({f"torch/_pad/m{i}.py": f"X = {i}\n" for i in range(args.files)})
    torch = WheelSpec("torch", "2.13.0+cpu", "py3-none-any", files=files)
    lock = build_lock(work / "lockdir", [torch, plain_spec("filelock")], host=load_host())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"TORCHENV_CACHE_DIR": str(work / "cache"),
                "TORCHENV_USER_CONFIG": str(work / "none.toml")})  # fmt: skip
    auto = [str(exe), "auto", "torch", "--json", "--lock", str(lock), "--prefix",
            str(work / "env")]  # fmt: skip
    _, out = _once(auto, env, work)
    if json.loads(out)["action"] != "synced":
        raise SystemExit(f"the first auto did not sync: {out}")

    def series(extra: dict[str, str]) -> tuple[list[float], list[float]]:
        ours, floor = [], []
        for _ in range(args.runs):
            seconds, out = _once(auto, {**env, **extra}, work)
            if json.loads(out)["action"] != "unchanged":
                raise SystemExit(f"auto did work on a no-op run: {out}")
            ours.append(seconds)
            floor.append(_once([python, "-c", "pass"], env, work)[0])
        return ours, floor

    print(f"torchenv: {exe}; torch stand-in of {args.files} files; {args.runs} runs each")
    modes = [("fast", {})] + ([("full", {"TORCHENV_NO_FASTPATH": "1"})] if args.full else [])
    for label, extra in modes:
        ours, floor = series(extra)
        a, b = statistics.median(ours), statistics.median(floor)
        print(f"no-op auto ({label}): median {a * 1000:.1f} ms; python -c pass {b * 1000:.1f} ms;"
              f" ratio {a / b:.2f}x (target <= 2x)")  # fmt: skip
    if args.keep:
        print(f"kept {work}: {' '.join(auto)}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
