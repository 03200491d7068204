"""Which uv binary torchenv runs, for locking and for syncing alike."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path


def find_uv() -> str | None:
    """TORCHENV_UV (empty: no uv, so pip), else the `uv` package's binary, else the one beside
    this interpreter, else PATH; None when there is none."""
    explicit = os.environ.get("TORCHENV_UV")
    if explicit is not None:
        return explicit or None  # TORCHENV_UV="" forces pip
    packaged = _packaged_uv()
    if packaged is not None:
        return packaged
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    return shutil.which("uv")


def uv_switched_off() -> bool:
    """TORCHENV_UV="": the user asked for no uv."""
    return os.environ.get("TORCHENV_UV") == ""


@functools.cache
def _packaged_uv() -> str | None:
    """The binary the `uv` package ships (it searches its install schemes: asked once)."""
    try:
        import uv
    except ImportError:
        return None
    try:
        found: str = uv.find_uv_bin()
    except FileNotFoundError:
        return None
    return found
