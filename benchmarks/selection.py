"""Selection speed: `torchenv select` wall time and the in-process select(), against uv's rule.

uv's `--torch-backend=auto` rule (driver version only, FACTS.md section 6) is re-implemented
here as a reference function over the same catalog; it is timed in the same run, and the
build it picks is checked against the GPU (how often uv's pick has no code for the GPU).

The dev environment sets PYTHONDONTWRITEBYTECODE=1, so every process recompiles torchenv;
the CLI is measured both ways (an installed torchenv has its bytecode).
Target (issue 3): `torchenv select` under 150 ms wall.
Usage: python benchmarks/selection.py [--runs N]
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
    args = parser.parse_args()
    use_test_helpers()
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


if __name__ == "__main__":
    main()
