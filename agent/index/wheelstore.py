"""The wheel store: wheels by sha256 under one cache directory, shared by lock and sync."""

from __future__ import annotations

from pathlib import Path

from torchenv.agent.base.fsutil import file_name, inside


def cached_wheel(wheels_dir: Path, sha256: str, filename: str) -> Path:
    """Content-addressed: a file there was checked against its hash when it was written.

    `filename` comes from a lock or an index page: it must be a plain wheel file name, and
    the path must stay inside `wheels_dir` (Escapes or InvalidWheelFilename otherwise).
    """
    from packaging.utils import parse_wheel_filename

    parse_wheel_filename(file_name(filename))
    return inside(wheels_dir, sha256[:2], sha256, filename)
