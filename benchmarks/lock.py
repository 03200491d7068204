"""Lock speed: `torchenv lock` against `uv pip compile` and pip doing the same resolution.

All three resolve torch + torchvision + torchaudio (cu126, Linux x86_64, CPython 3.11) against
the loopback index simulator with the same injected latency and realistically padded wheels:
- torchenv: `lock_for` in-process with the uv resolver (index client + `uv pip compile`);
- uv: `uv pip compile pyproject.toml` with the family pinned to the PyTorch index through
  `[tool.uv.sources]` (the only way uv pins an index per package), the rest from PyPI;
- pip: `pip install --dry-run --report` with the PyTorch index as an extra index (pip cannot
  pin per package, so it may take the index's copies: shown for time and bytes only).
Cold = empty caches; warm = the same caches again. Bytes = what the simulator sent.

With --real, against the loopback mirror of the machine's REAL wheels (tests/realmirror: plain
PEP 503 HTML, no metadata files, one release behind the catalog): torch + torchvision for an
H100 (driver 580, CUDA 13.0 wheels, CPython 3.11), about 3 GB of wheels:
- torchenv: `torchenv lock`'s core in-process (selection reading the index, then lock_for with
  uv; with --pip also with the pip resolver, through torchenv's metadata proxy);
- uv: `uv pip compile` with torch and torchvision pinned to the mirror's cu130 directory.

Targets (issue 4): torchenv cold within 1.3x of uv cold, and faster than pip.
Usage: python benchmarks/lock.py [--runs N] [--latency SECONDS] [--real [--pip]]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _common import fmt_ms, ratio, use_test_helpers

use_test_helpers()

from helpers.hosts import linux_host
from indexsim import IndexSim, Knobs, build_site, default_catalog
from indexsim.catalog import Catalog

from torchenv.agent.base.options import IndexConfig, LockOptions
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.base.settings import load_settings
from torchenv.agent.base.uvbin import find_uv
from torchenv.agent.host.source import HostFlags, load_host
from torchenv.agent.index.client import IndexClient
from torchenv.agent.lock.build import lock_for
from torchenv.agent.lock.inputs import parse_requirements
from torchenv.agent.lock.resolvers import UvResolver, target_of

FAMILY = ("torch", "torchvision", "torchaudio")
SIZES = {"torch": 900_000_000, "torchvision": 8_000_000, "torchaudio": 4_000_000}


@dataclass(frozen=True)
class Chosen:
    backend: str = "cu126"
    channel: str = "stable"
    torch: str | None = "2.9"
    reasons: tuple[str, ...] = ("benchmark",)


@dataclass(frozen=True)
class Figure:
    seconds: float
    bytes_sent: int


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


def measure(sim: IndexSim, fn: Callable[[], object]) -> Figure:
    sim.reset_counters()
    start = time.perf_counter()
    fn()
    return Figure(time.perf_counter() - start, sim.bytes_sent())


def torchenv_run(sim: IndexSim, cache: Path) -> None:
    settings = load_settings(
        {"torch-index-url": sim.torch_index_url, "index-url": sim.pypi_url,
         "cache-dir": str(cache)},
        env={}, cwd=cache.parent, user_config=cache / "none", system_config=cache / "none",
    )  # fmt: skip
    index = IndexConfig.from_settings(settings)
    # the client lock and auto make: index-max-age (600 s) spares the warm run revalidation
    with IndexClient(cache_dir=cache, page_max_age=index.page_max_age) as client:
        lock_for(FAMILY, linux_host(), Chosen(), index, resolver=UvResolver(), client=client)


def uv_run(sim: IndexSim, uv: str, project: Path, cache: Path) -> None:
    target = target_of(linux_host())
    subprocess.run(
        [uv, "pip", "compile", "pyproject.toml", "--quiet", "--no-header",
         "--python", sys.executable, "--no-python-downloads",
         "--python-version", target.python_version, "--python-platform", target.uv_platform(),
         "--index-url", sim.pypi_url, "--only-binary", ":all:", "--cache-dir", str(cache)],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip


def uv_project(sim: IndexSim, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sources = "\n".join(f'{n} = {{ index = "pytorch" }}' for n in FAMILY)
    (directory / "pyproject.toml").write_text(
        '[project]\nname = "bench"\nversion = "0"\nrequires-python = ">=3.10"\n'
        f"dependencies = {list(FAMILY)!r}\n\n"
        f'[[tool.uv.index]]\nname = "pytorch"\nurl = "{sim.torch_index_url}/cu126"\n'
        f"explicit = true\n\n[tool.uv.sources]\n{sources}\n"
    )
    return directory


def pip_run(sim: IndexSim, cache: Path | None) -> None:
    target = target_of(linux_host())
    cache_args = ["--cache-dir", str(cache)] if cache else ["--no-cache-dir"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", "-", "--isolated", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", target.python_minor, "--implementation", "cp",
         "--abi", "cp311", *(a for p in target.platform_tags for a in ("--platform", p)),
         "--target", str(Path(tempfile.mkdtemp()) / "t"),
         "--index-url", sim.pypi_url, "--extra-index-url", f"{sim.torch_index_url}/cu126",
         *cache_args, *FAMILY],
        check=True, capture_output=True,
    )  # fmt: skip


def series(runs: int, once: Callable[[int], tuple[Figure, Figure]]) -> tuple[Figure, Figure]:
    cold, warm = [], []
    for i in range(runs):
        c, w = once(i)
        cold.append(c)
        warm.append(w)
    return _median(cold), _median(warm)


def _median(figures: list[Figure]) -> Figure:
    return Figure(
        statistics.median(f.seconds for f in figures),
        int(statistics.median(f.bytes_sent for f in figures)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--no-pip", action="store_true", help="skip pip (slow)")
    parser.add_argument("--real", action="store_true", help="the real-wheel mirror")
    parser.add_argument("--pip", action="store_true", help="--real: also torchenv with pip")
    args = parser.parse_args()
    uv = find_uv()
    if uv is None:
        sys.exit("uv is not installed (it is a dependency of torchenv: pip install -e .)")
    if args.real:
        real_main(uv, args)
        return
    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-lock-"))
    try:
        site = build_site(padded_catalog(), work / "site")
        locked = ("torch-2.9.0+cu126-", "torchvision-0.24.0+cu126-", "torchaudio-2.9.0+cu126-")
        wheel_bytes = sum(
            f.size for n, f in site.files.items()
            if n.startswith(locked) and "cp311" in n and "x86_64" in n
        )  # fmt: skip
        with IndexSim(site, Knobs(latency=args.latency)) as sim:
            results = run_all(sim, uv, work, args.runs, with_pip=not args.no_pip)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, wheel_bytes, args)


def run_all(
    sim: IndexSim, uv: str, work: Path, runs: int, *, with_pip: bool
) -> dict[str, tuple[Figure, Figure]]:
    def ours(i: int) -> tuple[Figure, Figure]:
        cache = work / f"torchenv-{i}" / "cache"
        cache.mkdir(parents=True)
        return (measure(sim, lambda: torchenv_run(sim, cache)),
                measure(sim, lambda: torchenv_run(sim, cache)))  # fmt: skip

    def theirs(i: int) -> tuple[Figure, Figure]:
        project = uv_project(sim, work / f"uv-{i}")
        cache = work / f"uv-{i}-cache"
        return (measure(sim, lambda: uv_run(sim, uv, project, cache)),
                measure(sim, lambda: uv_run(sim, uv, project, cache)))  # fmt: skip

    def pips(i: int) -> tuple[Figure, Figure]:
        cache = work / f"pip-{i}-cache"
        return (measure(sim, lambda: pip_run(sim, cache)),
                measure(sim, lambda: pip_run(sim, cache)))  # fmt: skip

    results = {"torchenv (uv)": series(runs, ours), "uv pip compile": series(runs, theirs)}
    if with_pip:
        results["pip --dry-run"] = series(max(1, runs // 2), pips)
    return results


def report(
    results: dict[str, tuple[Figure, Figure]], wheel_bytes: int, args: argparse.Namespace
) -> None:
    print(
        f"lock torch+torchvision+torchaudio, cu126, linux x86_64, cp311; latency "
        f"{args.latency * 1000:.0f} ms/request; medians of {args.runs} runs"
    )
    print(f"the three wheels locked weigh {wheel_bytes / 1e6:.0f} MB")
    print(f"{'':18} {'cold':>11} {'bytes':>10} {'warm':>11} {'bytes':>10}")
    for name, (cold, warm) in results.items():
        print(
            f"{name:18} {fmt_ms(cold.seconds)} {cold.bytes_sent / 1e3:8.0f} kB "
            f"{fmt_ms(warm.seconds)} {warm.bytes_sent / 1e3:8.0f} kB"
        )
    ours, uv = results["torchenv (uv)"], results["uv pip compile"]
    print(
        f"torchenv / uv: cold {ratio(ours[0].seconds, uv[0].seconds)} (target <= 1.3x), "
        f"warm {ratio(ours[1].seconds, uv[1].seconds)}"
    )
    if "pip --dry-run" in results:
        pip = results["pip --dry-run"]
        print(
            f"torchenv / pip: cold {ratio(ours[0].seconds, pip[0].seconds)} (target < 1x), "
            f"warm {ratio(ours[1].seconds, pip[1].seconds)}"
        )
    print(f"torchenv cold fetched {ours[0].bytes_sent / wheel_bytes:.4%} of the wheels' bytes")


# ---------------------------------------------------------------- the real-wheel mirror

REAL_FAMILY = ("torch", "torchvision")
H100 = HostFlags(os="linux", arch="x86_64", python="3.11", driver="580.95.05", gpus=("9.0",))


def real_main(uv: str, args: argparse.Namespace) -> None:
    from realmirror import Knobs as MirrorKnobs
    from realmirror import RealMirror, find_mirror_files

    work = Path(tempfile.mkdtemp(prefix="torchenv-bench-real-"))
    try:
        files = find_mirror_files(work / "mirror")
        if isinstance(files, str) or not files.has("cu130"):
            sys.exit(f"no real-wheel mirror here: {files if isinstance(files, str) else 'cu130'}")
        with RealMirror(files, MirrorKnobs(latency=args.latency)) as mirror:
            results, wheel_bytes = real_runs(mirror, uv, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"lock torch+torchvision for an H100 (cu130, linux x86_64, cp311) against the "
        f"real-wheel mirror; latency {args.latency * 1000:.0f} ms/request; medians of "
        f"{args.runs} runs"
    )
    print(f"the locked wheels weigh {wheel_bytes / 1e6:.0f} MB")
    print(f"{'':18} {'cold':>11} {'bytes':>10} {'warm':>11} {'bytes':>10}")
    for name, (cold, warm) in results.items():
        print(
            f"{name:18} {fmt_ms(cold.seconds)} {cold.bytes_sent / 1e3:8.0f} kB "
            f"{fmt_ms(warm.seconds)} {warm.bytes_sent / 1e3:8.0f} kB"
        )
    ours, theirs = results["torchenv (uv)"], results["uv pip compile"]
    print(
        f"torchenv / uv: cold {ratio(ours[0].seconds, theirs[0].seconds)} time, "
        f"{ratio(ours[0].bytes_sent, theirs[0].bytes_sent)} bytes; warm "
        f"{ratio(ours[1].seconds, theirs[1].seconds)} time, "
        f"{ratio(ours[1].bytes_sent, theirs[1].bytes_sent)} bytes"
    )
    for name, (cold, _) in results.items():
        print(f"{name} cold fetched {cold.bytes_sent / wheel_bytes:.4%} of the wheels' bytes")


def real_runs(
    mirror: Any, uv: str, work: Path, args: argparse.Namespace
) -> tuple[dict[str, tuple[Figure, Figure]], int]:
    host = load_host(flags=H100)
    sizes: list[int] = []

    def torchenv_real(cache: Path, resolver: str) -> None:
        from torchenv.agent.pipeline.stages import lock_selected

        settings = load_settings(
            {"torch-index-url": mirror.torch_index_url, "index-url": mirror.index_url,
             "cache-dir": str(cache), "resolver": resolver},
            env={}, cwd=cache.parent, user_config=cache / "none", system_config=cache / "none",
        )  # fmt: skip
        lock = lock_selected(
            host, parse_requirements(REAL_FAMILY), LockOptions.from_settings(settings), Reporter()
        )
        files = mirror.files
        served = {w.filename: w.size for w in files.default}
        served.update({w.filename: w.size for ws in files.torch.values() for w in ws})
        sizes.append(sum(served.get(p.wheel.name or "", 0) for p in lock.packages))

    def ours(resolver: str) -> Callable[[int], tuple[Figure, Figure]]:
        def once(i: int) -> tuple[Figure, Figure]:
            cache = work / f"torchenv-{resolver}-{i}" / "cache"
            cache.mkdir(parents=True)
            return (measure(mirror, lambda: torchenv_real(cache, resolver)),
                    measure(mirror, lambda: torchenv_real(cache, resolver)))  # fmt: skip

        return once

    def theirs(i: int) -> tuple[Figure, Figure]:
        project = work / f"uv-{i}"
        project.mkdir()
        sources = "\n".join(f'{n} = {{ index = "pytorch" }}' for n in REAL_FAMILY)
        (project / "pyproject.toml").write_text(
            '[project]\nname = "bench"\nversion = "0"\nrequires-python = ">=3.10"\n'
            f"dependencies = {list(REAL_FAMILY)!r}\n\n"
            f'[[tool.uv.index]]\nname = "pytorch"\nurl = "{mirror.torch_index_url}/cu130"\n'
            f"explicit = true\n\n[tool.uv.sources]\n{sources}\n"
        )
        cache = work / f"uv-{i}-cache"

        def run() -> None:
            subprocess.run(
                [uv, "pip", "compile", "pyproject.toml", "--quiet", "--no-header",
                 "--no-config", "--python", sys.executable, "--no-python-downloads",
                 "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28",
                 "--index-url", mirror.index_url, "--only-binary", ":all:",
                 "--format", "pylock.toml", "--cache-dir", str(cache)],
                cwd=project, check=True, capture_output=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("UV_")},
            )  # fmt: skip

        return measure(mirror, run), measure(mirror, run)

    results = {"torchenv (uv)": series(args.runs, ours("uv"))}
    results["uv pip compile"] = series(args.runs, theirs)
    if args.pip:
        results["torchenv (pip)"] = series(max(1, args.runs // 2), ours("pip"))
    return results, max(sizes)


if __name__ == "__main__":
    main()
