"""The lock-source setting: a directory or an http(s) URL of a published lock index."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


INDEX_NAME = "index.json"
