"""How much torchenv reads of anything it did not write: every bound, in one place.

Each limit is generous for real inputs (the figures in the comments) and small enough that a
hostile or broken source (an endless page, `/dev/zero` as a file, a body without a size)
cannot exhaust memory or disk: readers stream and stop one byte past the limit.
"""

from __future__ import annotations

from torchenv.probes.hostio import MAX_RECORDED_FILE

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# Files the user gives.
MAX_REQUIREMENTS_FILE = 4 * MiB  # `lock -r`: hashed pip-compile output of 500 packages < 1 MiB
MAX_CONFIG_FILE = 4 * MiB  # pyproject.toml, the user, system and agent config files
MAX_LOCK_FILE = 32 * MiB  # pylock.toml (also a published one): a few KiB per package
MAX_LOCK_INDEX = 16 * MiB  # a lock-source index.json: about 1 KiB per hardware class
MAX_HOST_REPORT = 4 * MiB  # `probe --json` output: about 10 KiB

# What indexes answer.
MAX_PAGE = 64 * MiB  # a project page: download.pytorch.org's torch pages are several MB
MAX_METADATA = 8 * MiB  # a wheel's METADATA: KBs, about 1 MB with a long description
MAX_ZIP_DIRECTORY = 64 * MiB  # a wheel's central directory: torch's 12,000 entries are 1.5 MB
MAX_WHEEL = 16 * GiB  # one wheel, locked or unsized (the largest published are ~3 GB)

# What torchenv keeps and the agent is sent.
MAX_CACHE_ENTRY = MAX_PAGE + 64 * KiB  # an HTTP cache entry: a page and its header
MAX_CATALOG = 16 * MiB  # the refreshed catalog in the cache dir: about 100 KiB
MAX_REQUEST_HEAD = 8 * KiB  # the agent's HTTP request line and headers
MAX_REQUEST_BODY = 64 * KiB  # the agent's request bodies: `{"environment": "NAME"}`
MAX_TOOL_OUTPUT = 16 * KiB  # the part of uv's or pip's error output a message keeps

__all__ = [
    "MAX_CACHE_ENTRY",
    "MAX_CATALOG",
    "MAX_CONFIG_FILE",
    "MAX_HOST_REPORT",
    "MAX_LOCK_FILE",
    "MAX_LOCK_INDEX",
    "MAX_METADATA",
    "MAX_PAGE",
    "MAX_RECORDED_FILE",
    "MAX_REQUEST_BODY",
    "MAX_REQUEST_HEAD",
    "MAX_REQUIREMENTS_FILE",
    "MAX_TOOL_OUTPUT",
    "MAX_WHEEL",
    "MAX_ZIP_DIRECTORY",
    "TooLarge",
    "size_text",
]


def size_text(n: int) -> str:
    """1048576 -> "1 MiB" (the unit that fits, whole numbers where exact)."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


class TooLarge(ValueError):
    """A source held more than torchenv reads of it; callers turn it into their own error."""

    def __init__(self, what: str, where: str, limit: int) -> None:
        super().__init__(
            f"{where} is larger than {size_text(limit)}, the most torchenv reads of a {what}"
        )
        self.what = what
        self.where = where
        self.limit = limit
