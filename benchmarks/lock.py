"""Lock speed: the whole `torchenv lock` command against the whole `uv pip compile` command.

Both are processes started by this script, as users run them: torchenv is the console script of
an INSTALLED torchenv (`--torchenv PATH`; default: the `torchenv` beside this interpreter;
install it non-editable and write its bytecode, or the figures are not the users'), uv the uv
binary torchenv depends on. Each run, alternating which goes first, times for each: cold
(empty caches: a fresh TORCHENV_CACHE_DIR, a fresh uv --cache-dir), then warm (the same caches,
the same command again). Wall = from start to exit of the command; CPU = the user+sys seconds of
the command and every process it waited for (getrusage(RUSAGE_CHILDREN) deltas); bytes and
requests = what the server sent and answered. Medians of --runs, and torchenv / uv ratios of each.

- simulator (default): torch + torchvision + torchaudio, cu126, Linux x86_64, CPython 3.11,
  from the loopback PEP 691/658 index simulator with realistically padded wheels; uv with the
  family pinned to the cu126 index through `[tool.uv.sources]` (the only way uv pins an index
  per package), the rest from the simulated PyPI.
- --real: torch + torchvision for an H100 (driver 580: CUDA 13.0 wheels) from the loopback
  mirror of the machine's REAL wheels (tests/realmirror: plain PEP 503 HTML, no metadata
  files, no sizes); uv with the family pinned to the mirror's cu130 directory.
Each at every --latency (ms injected before every answer; default 0 and 20). --with NAME (as
often as wanted) adds a requirement beyond the family to both sides, as a project's own
dependencies are (e.g. --real --with transformers: the mirror holds its whole tree).

Targets (issue 13): cold lock <= 1.0x uv wall on both indexes at 20 ms latency, cold CPU
<= 2x uv's; warm lock <= 1.5x uv wall (index pages younger than index-max-age, 600 s by
default, are not read again; `--refresh` reads them).
Usage: python benchmarks/lock.py [--runs N] [--latency MS]... [--real] [--with NAME]...
                                  [--torchenv PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _common import fmt_ms, ratio, use_test_helpers

use_test_helpers()

from indexsim import IndexSim, Knobs, build_site, default_catalog
from indexsim.catalog import Catalog

from torchenv.agent.base.uvbin import find_uv

SIM_FAMILY = ("torch", "torchvision", "torchaudio")
SIZES = {"torch": 900_000_000, "torchvision": 8_000_000, "torchaudio": 4_000_000}
REAL_FAMILY = ("torch", "torchvision")
H100 = ("--os", "linux", "--arch", "x86_64", "--python", "3.11",
        "--driver", "580.95.05", "--gpu", "9.0")  # fmt: skip


@dataclass(frozen=True)
class Figure:
    wall: float
    cpu: float
    bytes_sent: int
    requests: int


@dataclass(frozen=True)
class Case:
    """One index served: the commands of both tools against it."""

    name: str
    server: Any  # IndexSim or RealMirror: reset_counters(), bytes_sent()
    ours: list[str]  # torchenv lock ... (run in a scratch directory)
    ours_env: dict[str, str]
    theirs: list[str]  # uv pip compile ... (run in the uv project's directory)
    theirs_cwd: Path


def padded_catalog() -> Catalog:
    """cp311 only; the family wheels of the benchmarked build padded to realistic sizes."""
    catalog = default_catalog(pythons=("cp311",))
    return Catalog(
        tuple(
            replace(h, wheel=replace(h.wheel, padding=SIZES[h.project]))
            if h.wheel is not None
            and h.project in SIZES
            and h.variant == "cu126"
            and h.channel == ""
            and h.wheel.tag.endswith("x86_64")
            else h
            for h in catalog.files
        )
    )


def timed(server: Any, argv: Sequence[str], env: dict[str, str], cwd: Path) -> Figure:
    """One whole command: wall, CPU of it and its children, bytes the server sent."""
    server.reset_counters()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Figure(wall, cpu, server.bytes_sent(), len(server.requests()))


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without torchenv's, uv's and pip's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHENV_", "UV_", "PIP_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' interpreters write and use bytecode
    return {**env, **extra}


def uv_project(
    directory: Path, family: Sequence[str], torch_index: str, rest: Sequence[str] = ()
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sources = "\n".join(f'{n} = {{ index = "pytorch" }}' for n in family)
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "bench"\nversion = "0"\nrequires-python = ">=3.10"\n'
        f"dependencies = {[*family, *rest]!r}\n\n"
        f'[[tool.uv.index]]\nname = "pytorch"\nurl = "{torch_index}"\n'
        f"explicit = true\n\n[tool.uv.sources]\n{sources}\n"
    )
    return directory


def uv_compile(uv: str, index_url: str, platform: str) -> list[str]:
    return [uv, "pip", "compile", "pyproject.toml", "--quiet", "--no-header", "--no-config",
            "--python", sys.executable, "--no-python-downloads", "--python-version", "3.11",
            "--python-platform", platform, "--index-url", index_url, "--only-binary", ":all:",
            "--format", "pylock.toml"]  # fmt: skip


def torchenv_lock(torchenv: str, family: Sequence[str], host: Sequence[str]) -> list[str]:
    return [torchenv, "lock", *family, *host, "-o", "pylock.toml", "-q"]


def run_case(case: Case, runs: int, work: Path) -> dict[str, tuple[Figure, Figure]]:
    """Per run, both tools cold then warm, alternating which goes first; medians."""
    ours: list[tuple[Figure, Figure]] = []
    theirs: list[tuple[Figure, Figure]] = []

    def torchenv_once(i: int) -> None:
        scratch = work / f"{case.name}-torchenv-{i}"
        scratch.mkdir(parents=True)
        env = {**case.ours_env, "TORCHENV_CACHE_DIR": str(scratch / "cache")}
        cold = timed(case.server, case.ours, env, scratch)
        ours.append((cold, timed(case.server, case.ours, env, scratch)))

    def uv_once(i: int) -> None:
        cache = work / f"{case.name}-uv-{i}-cache"
        argv = [*case.theirs, "--cache-dir", str(cache)]
        env = clean_env(UV_NO_PROGRESS="1")
        cold = timed(case.server, argv, env, case.theirs_cwd)
        theirs.append((cold, timed(case.server, argv, env, case.theirs_cwd)))

    for i in range(runs):
        first, second = (torchenv_once, uv_once) if i % 2 == 0 else (uv_once, torchenv_once)
        first(i)
        second(i)
    return {"torchenv lock": _medians(ours), "uv pip compile": _medians(theirs)}


def _medians(pairs: list[tuple[Figure, Figure]]) -> tuple[Figure, Figure]:
    def median(figures: list[Figure]) -> Figure:
        return Figure(
            statistics.median(f.wall for f in figures),
            statistics.median(f.cpu for f in figures),
            int(statistics.median(f.bytes_sent for f in figures)),
            int(statistics.median(f.requests for f in figures)),
        )

    return median([c for c, _ in pairs]), median([w for _, w in pairs])


def report(title: str, results: dict[str, tuple[Figure, Figure]]) -> None:
    print(title)
    print(f"{'':16} {'cold wall':>11} {'cold CPU':>11} {'bytes':>10} {'reqs':>4}"
          f" {'warm wall':>11} {'warm CPU':>11} {'bytes':>10} {'reqs':>4}")  # fmt: skip
    for name, (cold, warm) in results.items():
        print(
            f"{name:16} {fmt_ms(cold.wall)} {fmt_ms(cold.cpu)} {cold.bytes_sent / 1e3:7.0f} kB "
            f"{cold.requests:4} {fmt_ms(warm.wall)} {fmt_ms(warm.cpu)} "
            f"{warm.bytes_sent / 1e3:7.0f} kB {warm.requests:4}"
        )
    (oc, ow), (tc, tw) = results["torchenv lock"], results["uv pip compile"]
    print(
        f"torchenv / uv: cold wall {ratio(oc.wall, tc.wall)} (target <= 1.0x), "
        f"cold CPU {ratio(oc.cpu, tc.cpu)} (target <= 2x), "
        f"warm wall {ratio(ow.wall, tw.wall)} (target <= 1.5x), warm CPU {ratio(ow.cpu, tw.cpu)}"
    )


@contextmanager
def simulator(latency: float, work: Path) -> Iterator[Any]:
    site = build_site(padded_catalog(), work / "site")
    with IndexSim(site, Knobs(latency=latency)) as sim:
        yield sim


@contextmanager
def real_mirror(latency: float, work: Path) -> Iterator[Any]:
    from realmirror import Knobs as MirrorKnobs
    from realmirror import RealMirror, find_mirror_files

    files = find_mirror_files(work / "mirror")
    if isinstance(files, str) or not files.has("cu130"):
        sys.exit(f"no real-wheel mirror here: {files if isinstance(files, str) else 'cu130'}")
    with RealMirror(files, MirrorKnobs(latency=latency)) as mirror:
        yield mirror


def sim_case(sim: Any, torchenv: str, uv: str, work: Path, rest: Sequence[str] = ()) -> Case:
    env = clean_env(TORCHENV_TORCH_INDEX_URL=sim.torch_index_url,
                    TORCHENV_INDEX_URL=sim.pypi_url, **_no_config(work))  # fmt: skip
    project = uv_project(work / "uv-sim", SIM_FAMILY, f"{sim.torch_index_url}/cu126", rest)
    ours = torchenv_lock(torchenv, (*SIM_FAMILY, *rest), (*H100, "--backend", "cu126"))
    return Case(
        "sim", sim, ours, env,
        uv_compile(uv, sim.pypi_url, "x86_64-manylinux_2_28"), project,
    )  # fmt: skip


def real_case(mirror: Any, torchenv: str, uv: str, work: Path, rest: Sequence[str] = ()) -> Case:
    env = clean_env(TORCHENV_TORCH_INDEX_URL=mirror.torch_index_url,
                    TORCHENV_INDEX_URL=mirror.index_url, **_no_config(work))  # fmt: skip
    project = uv_project(work / "uv-real", REAL_FAMILY, f"{mirror.torch_index_url}/cu130", rest)
    return Case(
        "real", mirror, torchenv_lock(torchenv, (*REAL_FAMILY, *rest), H100), env,
        uv_compile(uv, mirror.index_url, "x86_64-manylinux_2_28"), project,
    )  # fmt: skip


def _no_config(work: Path) -> dict[str, str]:
    """No user, system or pip configuration: the indexes are the ones given."""
    none = str(work / "no-config")
    return {"TORCHENV_USER_CONFIG": none, "TORCHENV_SYSTEM_CONFIG": none, "PIP_CONFIG_FILE": none}


def default_torchenv() -> str | None:
    beside = Path(sys.executable).parent / "torchenv"
    return str(beside) if beside.exists() else shutil.which("torchenv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, action="append", help="ms per request")
    parser.add_argument("--real", action="store_true", help="the real-wheel mirror")
    parser.add_argument("--torchenv", help="an installed torchenv console script")
    parser.add_argument("--with", dest="rest", action="append", default=[], metavar="NAME",
                        help="a requirement beyond the family, on both sides")  # fmt: skip
    args = parser.parse_args()
    uv, torchenv = find_uv(), args.torchenv or default_torchenv()
    if uv is None:
        sys.exit("uv is not installed (it is a dependency of torchenv: pip install .)")
    if torchenv is None:
        sys.exit("no torchenv console script: pass --torchenv PATH")
    serve: Callable[[float, Path], Any] = real_mirror if args.real else simulator
    make = real_case if args.real else sim_case
    what = (
        "torch+torchvision for an H100 (cu130, linux x86_64, cp311), the real-wheel mirror"
        if args.real
        else "torch+torchvision+torchaudio (cu126, linux x86_64, cp311), the index simulator"
    )
    what += "".join(f" + {name}" for name in args.rest)
    print(f"lock {what}; {torchenv} vs {uv}")
    for latency in args.latency or [0.0, 20.0]:
        work = Path(tempfile.mkdtemp(prefix="torchenv-bench-lock-"))
        try:
            with serve(latency / 1000, work) as server:
                results = run_case(make(server, torchenv, uv, work, args.rest), args.runs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report(f"latency {latency:.0f} ms/request; medians of {args.runs} runs", results)


if __name__ == "__main__":
    main()
