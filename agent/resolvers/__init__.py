"""Resolver backends (uv preferred, pip fallback) and the choice between them."""

from __future__ import annotations

from torchenv.agent.errors import ResolutionError
from torchenv.agent.resolvers.base import Pin, Resolution, Resolver, ResolveRequest
from torchenv.agent.resolvers.pip import PipResolver
from torchenv.agent.resolvers.target import Target, target_of
from torchenv.agent.resolvers.uv import UvResolver

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

ORDER = ("uv", "pip")


def _make(name: str) -> Resolver:
    return UvResolver() if name == "uv" else PipResolver()


def choose_resolver(name: str = "auto") -> Resolver:
    """`auto` takes the first available of uv, pip; a named one must be available."""
    if name not in ("auto", *ORDER):
        raise ResolutionError(f"unknown resolver {name!r}", hint="use auto, uv or pip")
    reasons: list[str] = []
    for candidate in ORDER if name == "auto" else (name,):
        resolver = _make(candidate)
        why = resolver.unavailable()
        if why is None:
            return resolver
        reasons.append(f"{candidate}: {why}")
    raise ResolutionError(
        "no resolver can run here: " + "; ".join(reasons),
        hint="install torchenv[uv] (preferred) or pip into torchenv's environment",
    )
