"""No-op `torchenv auto torch` (host, request and lock unchanged) against `python -c pass`.

Run: .venv-dev/bin/python benchmarks/noop.py [--torchenv PATH] [--runs N] [--files N --dirs N]
                                             [--real] [--full]

PATH is the `torchenv` command to time (default: the one beside this interpreter); measure an
installed one (`pip install .` into a scratch venv) with bytecode written, as users have it.
The floor is that command's own interpreter running `python -c pass`, timed in the same run,
alternating with torchenv. The environment is synced once by `auto`, then (2 s later: no
stamp rests on mtimes that recent) one untimed no-op writes the stamp; every timed run is the
no-op: the fast check of agent/cli/fastpath.py when the stamp holds (one stat per directory of
the runtime files and per sentinel file), else the full path (probe, compare, one lstat per
runtime file). Two environments:
- default: a torch stand-in shaped like the real CPU wheel (N runtime files in N packages,
  nested, each with its __init__.py: 2,712 in 472 by default) and filelock, from a lock of
  file:// wheels (no network);
- --real: the REAL CPU torch 2.13.0 and its dependencies from this machine's wheels, which
  tests/realmirror serves as a loopback mirror (`auto` locks and syncs it; skipped with a
  message where pip's configuration finds no such wheels).
`--full` times the full path too (TORCHENV_NO_FASTPATH=1). Target (issue 13): the no-op auto
<= 2x `python -c pass`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import marshal
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def standin_files(files: int, dirs: int) -> dict[str, str]:
    """torch's stub plus modules in `dirs` packages, 16 subpackages to a group (torch/_pad/gK/pJ),
    each package with its __init__.py, `files` runtime files in all."""
    out = torch_stub("2.13.0+cpu", None, ["sm_90"])
    packages = ["torch/_pad"] + [
        f"torch/_pad/g{j // 16}" + ("" if j % 16 == 0 else f"/p{j}") for j in range(dirs - 1)
    ]
    out.update({f"{p}/__init__.py": "" for p in packages})
    for i in range(max(0, files - len(out))):
        out[f"{packages[i % len(packages)]}/m{i}.py"] = f"X = {i}\n"
    return out


@contextlib.contextmanager
def standin(work: Path, args: argparse.Namespace) -> Iterator[tuple[list[str], dict[str, str]]]:
    files = standin_files(args.files, args.dirs)
    torch = WheelSpec("torch", "2.13.0+cpu", "py3-none-any", files=files)
    lock = build_lock(work / "lockdir", [torch, plain_spec("filelock")], host=load_host())
    print(f"torch stand-in: {len(files)} files in {len({os.path.dirname(f) for f in files})} dirs")
    yield ["--lock", str(lock)], {}


@contextlib.contextmanager
def real(work: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    from realmirror import RealMirror, find_mirror_files

    files = find_mirror_files(work / "mirror")
    reason = files if isinstance(files, str) else files.skip_reason("cpu")
    if reason is not None or sys.version_info[:2] != (3, 11):
        raise SystemExit(f"--real skipped: {reason or 'the real wheels here are for CPython 3.11'}")
    with RealMirror(files) as mirror:
        print(f"real torch: {', '.join(w.filename for w in files.builds('cpu'))} (loopback mirror)")
        yield [], {"TORCHENV_TORCH_INDEX_URL": mirror.torch_index_url,
                   "TORCHENV_INDEX_URL": mirror.index_url,
                   "TORCHENV_SYSTEM_CONFIG": str(work / "none.toml"),
                   "UV_CACHE_DIR": str(work / "uv-cache")}  # fmt: skip


def _stamp_size(work: Path) -> str:
    stamps = sorted((work / "cache" / "noop").glob("*.bin"))
    if not stamps:
        return "no stamp"
    stamp = marshal.loads(stamps[0].read_bytes())
    return (
        f"stamp {stamps[0].stat().st_size / 1000:.0f} kB: {len(stamp.get('dirs', ()))} "
        f"directories, {len(stamp.get('sentinels', ()))} sentinel files, "
        f"{len(stamp.get('inputs', ()))} other inputs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchenv", default=str(Path(sys.executable).parent / "torchenv"))
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--files", type=int, default=2712, help="runtime files in the stand-in")
    parser.add_argument("--dirs", type=int, default=472, help="packages in the stand-in")
    parser.add_argument("--real", action="store_true", help="the real CPU torch 2.13.0")
    parser.add_argument("--full", action="store_true", help="time the full no-op path too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    exe = Path(args.torchenv)
    python = str(exe.parent / "python")

    work = Path(tempfile.mkdtemp(prefix="torchenv-noop-"))
    skip = ("PYTHONDONTWRITEBYTECODE", "TORCHENV_", "UV_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update({"TORCHENV_CACHE_DIR": str(work / "cache"),
                "TORCHENV_USER_CONFIG": str(work / "none.toml")})  # fmt: skip
    try:
        with real(work) if args.real else standin(work, args) as (lock_args, extra_env):
            env.update(extra_env)
            if args.keep:  # to run the command by hand: this shell, PYTHONDONTWRITEBYTECODE unset
                ours = (f"export {k}={v}" for k, v in env.items() if k.startswith(skip[1:]))
                print(*ours, sep="\n")
            auto = [str(exe), "auto", "torch", "--json", *lock_args, "--prefix", str(work / "env")]
            _, out = _once(auto, env, work)
            if json.loads(out)["action"] != "synced":
                raise SystemExit(f"the first auto did not sync: {out}")
            # No stamp rests on mtimes a coarse clock may yet repeat (git's racy rule): once
            # the sync's are 2 s old, one full no-op run writes it.
            time.sleep(2.1)
            _once(auto, env, work)
            measure(auto, python, env, work, args)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(
    auto: list[str], python: str, env: dict[str, str], work: Path, args: argparse.Namespace
) -> None:
    def series(extra: dict[str, str]) -> tuple[list[float], list[float]]:
        ours, floor = [], []
        for _ in range(args.runs):
            seconds, out = _once(auto, {**env, **extra}, work)
            if json.loads(out)["action"] != "unchanged":
                raise SystemExit(f"auto did work on a no-op run: {out}")
            ours.append(seconds)
            floor.append(_once([python, "-c", "pass"], env, work)[0])
        return ours, floor

    manifest = next((work / "env").resolve().glob("torchenv-files.json"))
    groups = json.loads(manifest.read_text())["files"].values()
    runtime = sum(len(entries) for per_dist in groups for entries in per_dist.values())
    print(f"torchenv: {auto[0]}; {runtime} runtime files in the environment; {args.runs} runs each")
    modes = [("fast", {})] + ([("full", {"TORCHENV_NO_FASTPATH": "1"})] if args.full else [])
    for label, extra in modes:
        ours, floor = series(extra)
        a, b = statistics.median(ours), statistics.median(floor)
        print(f"no-op auto ({label}): median {a * 1000:.1f} ms; python -c pass {b * 1000:.1f} ms;"
              f" ratio {a / b:.2f}x (target <= 2x)")  # fmt: skip
    print(_stamp_size(work))
    print(f"the command: {' '.join(auto)}")


if __name__ == "__main__":
    main()
