"""`[tool.torchenv.target]`: a host's target facts with named keys, and the older arrays read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The keys of each fact that HostReport.target_facts() gives as an array, in its order.
FIELDS: dict[str, tuple[str, ...]] = {
    "libc": ("name", "version"),
    "python": ("implementation", "version", "free-threaded"),
    "nvidia": ("state", "cuda", "driver", "compute-capabilities", "tegra"),
    "amd": ("rocm", "gfx"),
    "macos": ("version", "apple-silicon", "rosetta"),
}


def named(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The target facts as a lock writes them: `python = {implementation = "cpython", ...}`.
    Facts already named, and those with no fields (os, arch, intel), stay as they are."""
    return {key: _named(key, value) for key, value in facts.items()}


def _named(key: str, value: Any) -> Any:
    fields = FIELDS.get(key)
    if fields is None or isinstance(value, (Mapping, str)):
        return value
    if isinstance(value, Sequence) and len(value) == len(fields):
        return dict(zip(fields, value, strict=True))
    return value  # a shape of neither form: compared as it is, so it shows as a difference


def comparable(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Named, in the TOML form, with an unknown field ("" in an array, absent in a table)
    left out: a lock written in either form compares equal to the host it was made for."""
    return {key: _plain(value) for key, value in named(facts).items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, (list, tuple)):
        return ["" if v is None else _plain(v) for v in value]
    return value
