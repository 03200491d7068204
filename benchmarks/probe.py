"""Probe speed: in-process `probe_host` and `torchenv probe --json` wall time, against peers.

Peers measured in the same run when importable (pip install light-the-torch torchruntime):
light-the-torch's backend detection (nvidia-smi only) and torchruntime's GPU detection (PCI
ids). They read far less than torchenv does; the ratio shows what the extra facts cost.

Targets (issue 2): in-process probe under 30 ms without GPUs; the CLI under 250 ms.
Usage: python benchmarks/probe.py [--runs N]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import fmt_ms, median_seconds, median_wall, ratio


def _peer_ltt() -> Callable[[], object] | None:
    if importlib.util.find_spec("light_the_torch") is None:
        return None
    from light_the_torch import _cb

    return _cb.detect_compatible_computation_backends


def _peer_torchruntime() -> Callable[[], object] | None:
    if importlib.util.find_spec("torchruntime") is None:
        return None
    from torchruntime import device_db, platform_detection

    def detect() -> object:
        return platform_detection.get_torch_platform(device_db.get_gpus())

    return detect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    from torchenv.probes import LiveIO, probe_host

    in_process = median_seconds(lambda: probe_host(LiveIO()), args.runs, warmup=2)
    exe = shutil.which("torchenv")
    cli_argv = [exe] if exe else [sys.executable, "-m", "torchenv.agent"]
    with tempfile.TemporaryDirectory() as cwd:
        cli = median_wall(
            [*cli_argv, "probe", "--json"],
            max(5, args.runs // 2),
            cwd=Path(cwd),
        )
        python_startup = median_wall([sys.executable, "-c", "pass"], max(5, args.runs // 2))

    cli_runs = max(5, args.runs // 2)
    print(f"median of {args.runs} runs in-process, {cli_runs} runs for commands")
    print(f"{'torchenv probe_host (in-process)':44s} {fmt_ms(in_process)}")
    print(f"{'torchenv probe --json (CLI wall)':44s} {fmt_ms(cli)}")
    print(f"{'python -c pass (interpreter start)':44s} {fmt_ms(python_startup)}")
    for name, factory in (
        ("light-the-torch detection", _peer_ltt),
        ("torchruntime get_gpus + platform", _peer_torchruntime),
    ):
        fn = factory()
        if fn is None:
            print(f"{name + ' (not installed)':44s} {fmt_ms(None)}")
            continue
        peer = median_seconds(fn, args.runs, warmup=1)
        print(f"{name:44s} {fmt_ms(peer)}   torchenv/peer {ratio(in_process, peer)}")
    print(
        f"targets: in-process < 30 ms ({'met' if in_process < 0.030 else 'MISSED'}), "
        f"CLI < 250 ms ({'met' if cli < 0.250 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
