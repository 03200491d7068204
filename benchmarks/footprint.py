"""What one provision costs a node: peak memory of the `torchenv auto` process tree, disk of the
environment and of the cache, and what a second provision from the warm cache downloads.

It runs the real `torchenv auto` (the agent's provisioning child) with the real CPU torch wheel
that this machine's pip configuration offers, served by the loopback index simulator: lock,
download, venv, install, and verification, which imports torch and computes on the CPU. The
process tree (torchenv, uv, the verifying interpreter) is sampled every 20 ms; its peak sum is
what a container's memory limit must hold. The idle agent itself: benchmarks/agent.py.

These figures size the Kubernetes DaemonSet (kubernetes/base/daemonset.yaml) and the
workload example's init container. A CUDA torch needs more: its wheels are ~3 GB (disk), and
its verification also starts a CUDA context, which this GPU-less run cannot measure.

Usage: python benchmarks/footprint.py [--torch-python PATH]
  --torch-python: also the peak RSS of that interpreter importing its torch and computing on
  the CPU (e.g. a venv with the CUDA build: its import maps far more than the CPU build's)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import use_test_helpers

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in raw.split()]


def _tree_rss(root: int) -> tuple[int, int]:
    """(sum, largest single) resident bytes of `root` and every descendant."""
    total = largest = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        total += rss
        largest = max(largest, rss)
        todo += _children(pid)
    return total, largest


def _du(path: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _run(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[dict[str, object], float, int, int]:
    """(auto's JSON summary, wall seconds, peak tree RSS, peak single-process RSS)."""
    peak = [0, 0]
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total, largest = _tree_rss(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=900)
    done.set()
    sampler.join()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"torchenv auto failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return json.loads(out), wall, peak[0], peak[1]


def torch_import_peak(python: Path) -> tuple[str, int]:
    """(torch's version, peak RSS in bytes) of `python` importing torch and computing."""
    code = "import torch; x = torch.ones(256, 256); (x @ x).sum(); print(torch.__version__)"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child
    if peak <= before:
        raise SystemExit("measure --torch-python first, or in a fresh process")
    return done.stdout.strip(), peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", type=Path)
    args = parser.parse_args()
    torch_peak = torch_import_peak(args.torch_python) if args.torch_python else None
    use_test_helpers()
    from helpers.realtorch import real_torch_catalog
    from indexsim import IndexSim, Knobs, build_site

    found = real_torch_catalog()
    if found is None:
        raise SystemExit("the pip configuration offers no CPU torch wheel for this interpreter")
    catalog, paths = found
    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="torchenv-footprint-") as raw:
        tmp = Path(raw)
        (tmp / "site").mkdir()
        for filename, path in paths.items():
            (tmp / "site" / filename).symlink_to(path)
        site = build_site(catalog, tmp / "site")
        wheels = sum(f.size for f in site.files.values())
        version = next(
            name.split("-")[1] for name in paths if name.startswith("torch-")
        )  # e.g. 2.13.0+cpu
        with IndexSim(site, Knobs()) as sim:
            env = {
                **os.environ,
                "TORCHENV_TORCH_INDEX_URL": sim.torch_index_url,
                "TORCHENV_INDEX_URL": sim.pypi_url,
                "TORCHENV_CACHE_DIR": str(tmp / "cache" / "torchenv"),
                "UV_CACHE_DIR": str(tmp / "cache" / "uv"),
                "TORCHENV_USER_CONFIG": str(tmp / "no-config.toml"),
            }
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            rows = []
            for name in ("cold cache", "warm cache"):
                prefix = tmp / name.replace(" ", "-") / "env"
                prefix.parent.mkdir()
                argv = [sys.executable, "-m", "torchenv.agent", "auto", "--json",
                        f"torch=={version.split('+')[0]}", "--prefix", str(prefix)]  # fmt: skip
                sim.reset_counters()
                summary, wall, tree, single = _run(argv, env, prefix.parent)
                fetched = sim.bytes_sent("*.whl")
                rows.append((name, wall, tree, single, _du(prefix.parent), fetched, summary))
            cache = _du(tmp / "cache")
    print(f"one provision of torch {version} (real wheels: {wheels / mib:.0f} MiB), this machine")
    for name, wall, tree, single, disk, fetched, summary in rows:
        ok = bool((summary.get("verify") or {}).get("ok"))  # type: ignore[union-attr]
        print(
            f"  {name:10}  {wall:6.1f} s  peak RSS {tree / mib:6.0f} MiB (tree), "
            f"{single / mib:5.0f} MiB (largest process)  env {disk / mib:5.0f} MiB  "
            f"wheels fetched {fetched / mib:5.0f} MiB  verified {ok}"
        )
    print(f"  shared cache after both: {cache / mib:.0f} MiB")
    if torch_peak is not None:
        print(f"import torch {torch_peak[0]} + CPU compute: peak RSS {torch_peak[1] / mib:.0f} MiB")


if __name__ == "__main__":
    main()
