"""The pure selection: which torch release and backend fit a host, and why each other does not."""

from __future__ import annotations

from torchenv.backends.select.core import pages_to_read, select
from torchenv.backends.select.model import (
    Candidate,
    Flag,
    InvalidRequest,
    Request,
    Selection,
    index_url,
)
from torchenv.backends.select.wants import Wants, parse_wants

__all__ = [
    "Candidate",
    "Flag",
    "InvalidRequest",
    "Request",
    "Selection",
    "Wants",
    "index_url",
    "pages_to_read",
    "parse_wants",
    "select",
]
