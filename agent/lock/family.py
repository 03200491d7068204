"""The torch family's wheels for one target (pure): tags ranked, markers, same-build checks."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.lock.resolvers.target import Target, target_of
from torchenv.backends.vocabulary import FAMILY, backend_kind, family_index_url, label_ok

if TYPE_CHECKING:
    from torchenv.agent.base.options import IndexConfig
    from torchenv.agent.index.model import Artifact, CoreMetadata
    from torchenv.probes.report import HostReport

from torchenv.agent.lock.inputs import (
    DEFAULT_REQUIREMENTS,
    FamilyChoice,
    LockInputs,
    parse_requirements,
)


def pages_ahead(
    requirements: Sequence[Requirement | str],
    host: HostReport,
    channel: str,
    backend: str,
    index: IndexConfig,
) -> tuple[str, tuple[str, ...]] | None:
    """The family pages a lock will certainly read, known before selecting where the backend
    is forced (so is the family's index): that index and torch plus each other member the
    requirements name for this target. None while the selection is yet to choose the index."""
    if backend_kind(backend) is None:  # "auto", or unknown (the selection says so)
        return None
    try:  # an unreadable line is the lock's to report, where it always is
        lines = parse_requirements(r for r in requirements if isinstance(r, str))
    except ResolutionError:
        return None
    reqs = [*(r for r in requirements if isinstance(r, Requirement)), *lines]
    env = target_of(host).markers()
    named = [canonicalize_name(r.name) for r in reqs or parse_requirements(DEFAULT_REQUIREMENTS)
             if not r.url and _marker_holds(r.marker, env)]  # fmt: skip
    macos = host.system.os == "macos"
    url = family_index_url(backend, channel, macos=macos, torch_index=index.torch_index_url,
                           default_index=index.default_index)  # fmt: skip
    return url.rstrip("/"), tuple(dict.fromkeys(["torch", *(n for n in named if n in FAMILY)]))


@functools.lru_cache(maxsize=16)
def tag_rank(target: Target) -> dict[Tag, int]:
    return {tag: i for i, tag in enumerate(target.tags())}


def best_rank(artifact: Artifact, ranks: Mapping[Tag, int]) -> int | None:
    found = [ranks[t] for t in artifact.tags if t in ranks]
    return min(found) if found else None


def python_ok(requires_python: str | None, target: Target) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(target.python_version, prereleases=True)
    except ValueError:
        return True  # an unreadable Requires-Python does not exclude (pip and uv agree)


def candidates(
    name: str,
    artifacts: Iterable[Artifact],
    target: Target,
    specifier: SpecifierSet,
    inputs: LockInputs,
) -> list[Artifact]:
    """The wheels of `name` the target can install, best first (newest, then best tag)."""
    ranks = tag_rank(target)
    prereleases = inputs.channel in ("nightly", "test") or None
    scored: list[tuple[Version, int, Artifact]] = []
    for artifact in artifacts:
        version = artifact.version
        if not artifact.is_wheel or artifact.yanked or version is None:
            continue
        rank = best_rank(artifact, ranks)
        if rank is None or not python_ok(artifact.requires_python, target):
            continue
        if not label_ok(name, version.local, inputs.variant):
            continue
        if not specifier.contains(version, prereleases=prereleases):
            continue
        if (
            name == "torch"
            and inputs.torch_release
            and not _in_release(version, inputs.torch_release)
        ):
            continue
        scored.append((version, rank, artifact))
    scored.sort(key=lambda s: (s[0], -s[1]), reverse=True)  # newest, then best tag
    # one wheel per version: the best-ranked one
    seen: set[Version] = set()
    best: list[Artifact] = []
    for version, _, artifact in scored:
        if version not in seen:
            seen.add(version)
            best.append(artifact)
    return best


def _in_release(version: Version, release: str) -> bool:
    wanted = tuple(int(p) for p in release.split(".")[:2] if p.isdigit())
    return version.release[: len(wanted)] == wanted


def active_requirements(
    metadata: CoreMetadata, target: Target, extras: frozenset[str] = frozenset()
) -> list[Requirement]:
    """The Requires-Dist entries whose markers hold for the target (with the given extras)."""
    env = target.markers()
    out: list[Requirement] = []
    for req in metadata.requires_dist:
        if req.marker is None:
            out.append(req)
            continue
        try:
            if any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                out.append(req)
        except (InvalidMarker, UndefinedEnvironmentName):
            continue
    return out


def pins_family(metadata: CoreMetadata, target: Target, chosen: Mapping[str, FamilyChoice]) -> bool:
    """Does every family requirement of this wheel accept the family builds already chosen?"""
    for req in active_requirements(metadata, target):
        name = canonicalize_name(req.name)
        if name in chosen and not req.specifier.contains(chosen[name].version, prereleases=True):
            return False
    return True


def _torch_applies(inputs: LockInputs, env: Mapping[str, str]) -> None:
    """torchenv always locks torch: a torch requirement whose marker excludes the target is an
    error, not a requirement to drop."""
    named = [r for r in inputs.requirements if canonicalize_name(r.name) == "torch"]
    if named and not any(_marker_holds(r.marker, env) for r in named):
        raise ResolutionError(
            f"the requirement {str(named[0])!r} excludes the target: its marker is false for "
            f"{inputs.target.describe()}, and torchenv always installs torch",
            hint="remove the marker, or lock for the target it names (--os, --arch, --python)",
            details={"requirement": str(named[0]), "target": inputs.target.describe()},
        )


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def _marker_holds(marker: Marker | None, env: Mapping[str, str]) -> bool:
    if marker is None:
        return True
    try:
        return marker.evaluate({**env, "extra": ""})
    except (InvalidMarker, UndefinedEnvironmentName):
        return False


def _same_build(version: Version | None, torch: Version, local: str | None) -> bool:
    if version is None:
        return False
    if version.local != local:
        return False
    return version.dev is None or version.dev == torch.dev
