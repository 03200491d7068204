"""Writing a file so that readers see the old or the new one, never half of either."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path,
    data: bytes,
    *,
    fsync: bool = False,
    mode: int | None = None,
    make_parents: bool = True,
) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`.

    `fsync` makes the content durable before the rename (state that must survive a crash);
    `mode` sets the permissions; OSError propagates, and no temporary file is left behind.
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
