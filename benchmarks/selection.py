"""Selection speed: `torchenv select` wall time and the in-process select(), against uv's rule.

uv's `--torch-backend=auto` rule (driver version only, FACTS.md section 6) is re-implemented
here as a reference function over the same catalog; it is timed in the same run, and the
build it picks is checked against the GPU (how often uv's pick has no code for the GPU).

The dev environment sets PYTHONDONTWRITEBYTECODE=1, so every process recompiles torchenv;
the CLI is measured both ways (an installed torchenv has its bytecode).
Target (issue 3): `torchenv select` under 150 ms wall.

With --torchenv PATH (an installed console script: `pip install .` into a scratch venv), the
issue 13 figures: `select --json` for an H100 with driver 580 given as flags, its index pages
read once from the simulator and kept (younger than index-max-age), timed against that venv's
`python -c pass` in the same run, alternating: the kept answer (agent/cli/fastpath.py), and the
answer computed again (TORCHENV_NO_FASTPATH=1; no request is sent either way), and the
interpreter importing typer alone: the floor of every command that reaches the typer CLI.
Target (issue 13): <= 2.5x `python -c pass`.
Usage: python benchmarks/selection.py [--runs N] [--torchenv PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, fmt_ms, median_seconds, median_wall, ratio, use_test_helpers

from torchenv.backends.catalog import Catalog, cuda_of, dotted, load_catalog
from torchenv.backends.select import Request, select

HOST = ROOT / "tests" / "hosts" / "gtx1080ti-driver580"
FLAGS = [
    "--os",
    "linux",
    "--arch",
    "x86_64",
    "--python",
    "3.12",
    "--driver",
    "580.95.05",
    "--gpu",
    "6.1",
]


def _uv_rule(catalog: Catalog) -> Callable[[str], str]:
    known = ("cu130", "cu129", "cu128", "cu126", "cu124", "cu121", "cu118")

    def pick(driver: str) -> str:
        for backend in known:
            floor = catalog.driver_floor(cuda_of(backend))
            if floor is not None and dotted(driver) >= floor.linux:
                return backend
        return "cpu"

    return pick


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--torchenv", help="an installed torchenv console script (issue 13)")
    args = parser.parse_args()
    use_test_helpers()
    if args.torchenv:
        kept_answer(Path(args.torchenv), args.runs)
        return
    from helpers.hosts import make_host

    exe = shutil.which("torchenv", path=str(Path(sys.executable).parent)) or "torchenv"
    pyc = tempfile.mkdtemp(prefix="torchenv-pyc-")
    compiled = {"PYTHONPYCACHEPREFIX": pyc, "PYTHONDONTWRITEBYTECODE": ""}
    env_nobc = {"PYTHONDONTWRITEBYTECODE": "1"}
    cache = tempfile.mkdtemp(prefix="torchenv-cache-")
    base = {"TORCHENV_CACHE_DIR": cache}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    rows = [
        ("python -c pass", median_wall([sys.executable, "-c", "pass"], args.runs, compiled)),
        (
            "python -c 'import typer'",
            median_wall([sys.executable, "-c", "import typer"], args.runs, compiled),
        ),
        (
            "torchenv select --replay (bytecode)",
            median_wall([exe, "select", "--replay", str(HOST)], args.runs, {**base, **compiled}),
        ),
        (
            "torchenv select flags (bytecode)",
            median_wall([exe, "select", *FLAGS], args.runs, {**base, **compiled}),
        ),
        (
            "torchenv select --replay (no bytecode)",
            median_wall([exe, "select", "--replay", str(HOST)], args.runs, {**base, **env_nobc}),
        ),
    ]
    catalog = load_catalog()
    host = make_host(driver="580.95.05", gpus=("6.1",))
    ours = median_seconds(lambda: select(host, Request(), catalog), args.runs * 20)
    load = median_seconds(load_catalog, args.runs * 5)
    uv = _uv_rule(catalog)
    theirs = median_seconds(lambda: uv("580.95.05"), args.runs * 20)
    for name, value in rows:
        print(f"{name:<42} {fmt_ms(value)}")
    print(f"{'load_catalog() in process':<42} {fmt_ms(load)}")
    print(f"{'select() in process':<42} {fmt_ms(ours)}")
    uv_label = "uv rule in process (driver only)"
    print(f"{uv_label:<42} {fmt_ms(theirs)}  (select() takes {ratio(ours, theirs)} as long)")
    print(
        f"picks on a GTX 1080 Ti, driver 580: torchenv {select(host, Request(), catalog).backend}"
        f", uv {uv('580.95.05')} (no sm_6x code)"
    )
    target = rows[2][1]
    print(
        f"target 150 ms for the CLI: {'met' if target < 0.150 else 'NOT met'} "
        f"({fmt_ms(target).strip()} with bytecode)"
    )
    shutil.rmtree(pyc, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


H100_FLAGS = ["--json", "--os", "linux", "--arch", "x86_64", "--python", "3.11",
              "--driver", "580.95.05", "--gpu", "9.0"]  # fmt: skip


def kept_answer(exe: Path, runs: int) -> None:
    """select with its listings kept, against `python -c pass` of exe's interpreter."""
    import statistics
    import subprocess
    import time

    from indexsim import IndexSim, Knobs, build_site, default_catalog

    work = Path(tempfile.mkdtemp(prefix="torchenv-select-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with IndexSim(build_site(default_catalog(), work / "site"), Knobs()) as sim:
        env.update({"TORCHENV_CACHE_DIR": str(work / "cache"),
                    "TORCHENV_USER_CONFIG": str(work / "none.toml"),
                    "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
                    "TORCHENV_INDEX_URL": sim.pypi_url})  # fmt: skip
        argv = [str(exe), "select", *H100_FLAGS]

        def once(cmd: list[str], extra: dict[str, str]) -> float:
            start = time.perf_counter()
            subprocess.run(cmd, env={**env, **extra}, check=True, capture_output=True)
            return time.perf_counter() - start

        once(argv, {})  # reads the pages; they are kept
        asked = len(sim.requests())
        print(f"torchenv: {exe}; {runs} runs each; the first select sent {asked} requests")
        python = str(exe.parent / "python")
        rows = (
            ("select (kept answer)", argv, {}),
            ("select (computed)", argv, {"TORCHENV_NO_FASTPATH": "1"}),
            ("import typer (a typer command's floor)", [python, "-c", "import typer"], {}),
        )
        for label, cmd, extra in rows:
            ours, floor = [], []
            for _ in range(runs):
                ours.append(once(cmd, extra))
                floor.append(once([python, "-c", "pass"], {}))
            a, b = statistics.median(ours), statistics.median(floor)
            print(f"{label}: median {a * 1000:.1f} ms; python -c pass {b * 1000:.1f} ms;"
                  f" ratio {a / b:.2f}x (target <= 2.5x)")  # fmt: skip
        print(f"requests after the first select: {len(sim.requests()) - asked}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
