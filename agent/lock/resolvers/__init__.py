"""Resolver backends (uv preferred, pip fallback) and the choice between them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from torchenv.agent.base.options import IndexConfig
    from torchenv.agent.base.reporter import Reporter
    from torchenv.agent.lock.resolvers.base import Pin, Resolution, Resolver, ResolveRequest
    from torchenv.agent.lock.resolvers.pip import PipResolver
    from torchenv.agent.lock.resolvers.target import Target, target_of
    from torchenv.agent.lock.resolvers.uv import UvResolver

__all__ = [
    "Pin",
    "PipResolver",
    "Resolution",
    "ResolveRequest",
    "Resolver",
    "Target",
    "UvResolver",
    "choose_resolver",
    "target_of",
]

# The names above, each loaded from its module when first asked for: a lock imports the one
# resolver it runs, and `import torchenv.agent.lock.resolvers.target` loads no resolver.
_HOMES = {
    "Pin": "base",
    "Resolution": "base",
    "ResolveRequest": "base",
    "Resolver": "base",
    "PipResolver": "pip",
    "Target": "target",
    "target_of": "target",
    "UvResolver": "uv",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def resolver_cache(index: IndexConfig) -> Path:
    """The resolver's own cache (uv's `--cache-dir`), inside torchenv's."""
    return index.cache_dir / "resolver"


ORDER = ("uv", "pip")
PIP_NOTE = (
    "pip reads each wheel's metadata through torchenv's loopback proxy (PEP 658 files or HTTP "
    "range requests), so no wheel is downloaded, but it resolves slower than uv"
)


def _make(name: str) -> Resolver:
    if name == "uv":
        from torchenv.agent.lock.resolvers.uv import UvResolver

        return UvResolver()
    from torchenv.agent.lock.resolvers.pip import PipResolver

    return PipResolver()


def choose_resolver(name: str = "auto", reporter: Reporter | None = None) -> Resolver:
    """`auto` takes the first available of uv, pip (and says so when it must fall back to
    pip); a named one must be available."""
    from torchenv.agent.base.errors import ResolutionError

    if name not in ("auto", *ORDER):
        raise ResolutionError(f"unknown resolver {name!r}", hint="use auto, uv or pip")
    reasons: list[str] = []
    for candidate in ORDER if name == "auto" else (name,):
        resolver = _make(candidate)
        why = resolver.unavailable()
        if why is None:
            if reasons and reporter is not None:
                reporter.warning(
                    f"resolving with {candidate}: " + "; ".join(reasons) + f". {PIP_NOTE}"
                )
            return resolver
        reasons.append(f"{candidate}: {why}")
    raise ResolutionError(
        "no resolver can run here: " + "; ".join(reasons),
        hint="reinstall torchenv (it depends on uv), or install pip into its environment",
    )
