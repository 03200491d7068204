"""The fault-injection seam: TORCHENV_FAULT=<point>[:action] fails a named step on purpose."""

from __future__ import annotations

import errno
import os

FAULT_ENV = "TORCHENV_FAULT"


def fault_point(name: str) -> None:
    """Test seam: TORCHENV_FAULT=<point>[:kill|enospc|eacces|interrupt] fails here on purpose."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, action = spec.partition(":")
    if point != name:
        return
    action = action or "kill"
    if action == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    if action == "interrupt":
        raise KeyboardInterrupt
    code = {"enospc": errno.ENOSPC, "eacces": errno.EACCES}.get(action, errno.EIO)
    raise OSError(code, os.strerror(code), f"<fault {name}>")
