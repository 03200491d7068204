"""Serve the simulated PyTorch and PyPI indexes by hand: `PYTHONPATH=tests python -m indexsim`."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
from pathlib import Path

from indexsim import IndexSim, build_site, default_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", action="append", help="cpXY to build wheels for (repeatable)")
    args = parser.parse_args()
    pythons = tuple(args.python or (f"cp{sys.version_info[0]}{sys.version_info[1]}",))
    with tempfile.TemporaryDirectory(prefix="indexsim-") as tmp:
        site = build_site(default_catalog(pythons=pythons), Path(tmp))
        with IndexSim(site) as sim:
            print(f"export TORCHENV_TORCH_INDEX_URL={sim.torch_index_url}")
            print(f"export TORCHENV_INDEX_URL={sim.pypi_url}")
            print("# serving test doubles of torch (they import, report their build, and do no")
            print("# math); Ctrl-C stops", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()


if __name__ == "__main__":
    main()
