"""The one seam through which probes read a host: live, recording, or replaying a directory."""

from __future__ import annotations

from torchenv.probes.hostio.base import (
    CommandResult,
    FactUnavailable,
    HostIO,
    Json,
    OverlayEnvIO,
    list_optional,
    read_optional,
)
from torchenv.probes.hostio.live import LiveIO
from torchenv.probes.hostio.recording import RecordingIO
from torchenv.probes.hostio.replay import MAX_RECORDED_FILE, RECORDING_PARTS, ReplayIO

__all__ = [
    "MAX_RECORDED_FILE",
    "RECORDING_PARTS",
    "CommandResult",
    "FactUnavailable",
    "HostIO",
    "Json",
    "LiveIO",
    "OverlayEnvIO",
    "RecordingIO",
    "ReplayIO",
    "list_optional",
    "read_optional",
]
