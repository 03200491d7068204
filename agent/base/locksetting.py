"""The lock-source setting: a directory or an http(s) URL of a published lock index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class LockSource:
    """Where the published locks are: an index URL, or an index file in a directory."""

    text: str  # as configured
    index_url: str | None = None
    index_path: Path | None = None

    def describe(self) -> str:
        return self.index_url or str(self.index_path)


def parse_source(text: str, *, cwd: Path | None = None) -> LockSource | None:
    """The configured value as a source (None when empty); ValueError when it is not one.

    A URL or path that ends in `.json` names the index itself; otherwise it is the directory
    (or URL prefix) that holds `index.json`.
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise ValueError("names no host")
        url = text if parts.path.endswith(".json") else text.rstrip("/") + "/" + INDEX_NAME
        return LockSource(text, index_url=url)
    if "://" in text and not text.startswith("file://"):
        raise ValueError("must be a directory, or an http://, https:// or file:// URL")
    path = Path(unquote(urlsplit(text).path)) if text.startswith("file://") else Path(text)
    path = path.expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return LockSource(text, index_path=path if path.suffix == ".json" else path / INDEX_NAME)
