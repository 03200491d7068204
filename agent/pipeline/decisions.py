"""The pure decisions of `auto`: the request's key, whether the lock still fits, what to do."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

REQUEST_KEYS = ("backend", "channel", "torch-index-url", "index-url", "resolver")


def request_key(requirements: Sequence[str], settings: Mapping[str, Any]) -> str:
    """What the user asked for, as a short hash: requirements plus the settings that decide."""
    payload = {"requirements": sorted(requirements), **{k: settings.get(k) for k in REQUEST_KEYS}}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _norm(requirements: Sequence[str]) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for text in requirements:
        try:
            out.append(str(Requirement(str(text))))
        except InvalidRequirement:
            out.append(str(text))
    return sorted(out)


def lock_mismatches(
    table: Mapping[str, Any],
    *,
    fingerprint: str,
    requirements: Sequence[str],
    settings: Mapping[str, Any],
) -> list[str]:
    """Why an existing lock's [tool.torchenv] does not fit this host and request (empty: fits)."""
    out = []
    if table.get("fingerprint") != fingerprint:
        out.append(f"host fingerprint {table.get('fingerprint')} != {fingerprint}")
    if _norm(table.get("requirements") or []) != _norm(requirements):
        out.append(f"requirements {table.get('requirements')} != {list(requirements)}")
    backend = settings.get("backend")
    if backend not in (None, "auto") and table.get("backend") != backend:
        out.append(f"backend {table.get('backend')} != {backend}")
    for key in ("channel", "torch-index-url", "index-url"):
        wanted = settings.get(key)
        if (
            wanted is not None
            and key in table
            and str(table[key]).rstrip("/") != str(wanted).rstrip("/")
        ):
            out.append(f"{key} {table[key]} != {wanted}")
    return out


def unchanged(
    state: Mapping[str, Any],
    *,
    active: str | None,
    fingerprint: str,
    request: str,
    lock_sha256: str | None,
    site: int | None,
) -> bool:
    """The last verified state still holds: same env, host, request, lock, installed files."""
    verified = state.get("verified")
    if not isinstance(verified, Mapping) or not verified.get("verified") or active is None:
        return False
    return (
        verified.get("env") == active
        and verified.get("fingerprint") == fingerprint
        and verified.get("request") == request
        and verified.get("lock_sha256") == lock_sha256
        and verified.get("site") == site
    )


def with_torch(requirements: Sequence[str]) -> list[str]:
    """The request always holds torch: add it when no requirement names it."""
    import re

    names = {re.split(r"[\s\[<>=!~;@(]", r.strip(), maxsplit=1)[0].lower() for r in requirements}
    return list(requirements) if "torch" in names else ["torch", *requirements]
