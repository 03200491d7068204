"""Serve the real-wheel mirror by hand: `PYTHONPATH=tests python -m realmirror`."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from pathlib import Path

from realmirror import RealMirror, find_mirror_files


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="realmirror-") as tmp:
        files = find_mirror_files(Path(tmp))
        if isinstance(files, str):
            sys.exit(f"no mirror: {files}")
        with RealMirror(files) as mirror:
            print(f"export TORCHENV_TORCH_INDEX_URL={mirror.torch_index_url}")
            print(f"export TORCHENV_INDEX_URL={mirror.index_url}")
            variants = ", ".join(f"{v} ({len(files.builds(v))} torch)" for v in sorted(files.torch))
            print(f"# PyTorch side: {variants}; default side: {len(files.default)} wheels")
            print("# Ctrl-C stops", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()


if __name__ == "__main__":
    main()
