"""What a lock is made from, typed: the requirements, the selection, the torch family's index."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.lock.resolvers.target import Target, target_of
from torchenv.backends.vocabulary import family_index_url, variant_of
from torchenv.probes.report import HostReport

if TYPE_CHECKING:
    from torchenv.agent.base.options import IndexConfig
    from torchenv.agent.index.model import Artifact, CoreMetadata


DEFAULT_REQUIREMENTS = ("torch", "torchvision", "torchaudio")


class SelectionLike(Protocol):
    """What the lock needs from backends.select.Selection."""

    @property
    def backend(self) -> str | None: ...

    @property
    def channel(self) -> str: ...


@dataclass(frozen=True)
class FamilyChoice:
    """One chosen family wheel with the metadata read from that very wheel."""

    name: str
    artifact: Artifact
    metadata: CoreMetadata
    extras: frozenset[str]

    @property
    def version(self) -> Version:
        return self.metadata.version


@dataclass(frozen=True)
class LockInputs:
    """Everything a lock depends on, resolved from the index configuration and the selection."""

    requirements: tuple[Requirement, ...]
    target: Target
    variant: str  # "cu126", "cpu", ...
    channel: str
    torch_release: str | None  # "2.9": the selection's release, None for any
    torch_index: str  # the variant's simple-API root, e.g. …/whl/nightly/cu126
    default_index: str


def parse_requirements(
    lines: Iterable[str], source: str = "the command line"
) -> tuple[Requirement, ...]:
    """PEP 508 requirements; comments and blank lines skipped, pip options refused."""
    found: list[Requirement] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ResolutionError(
                f"{source}: {line!r} is a pip option, which torchenv does not take from "
                "requirement files",
                hint="set indexes with `torchenv config` (index-url, torch-index-url); list "
                "only requirements here",
            )
        try:
            found.append(Requirement(line))
        except InvalidRequirement as exc:
            raise ResolutionError(
                f"{source}: {line!r} is not a requirement ({exc})",
                hint="write requirements as in pip, e.g. `torch>=2.6`",
            ) from exc
    return tuple(found)


def _backend(selection: SelectionLike) -> str:
    if not selection.backend:
        raise ResolutionError(
            "the selection chose no torch backend, so there is nothing to lock",
            hint="see `torchenv select --explain` for why no build fits",
        )
    return selection.backend


def family_index(selection: SelectionLike, host: HostReport, index: IndexConfig) -> str:
    """Where the torch family comes from: the selection's index, else the same rule as select's.

    Apple's builds (MPS, and CPU on macOS) are PyPI's unlabelled wheels: stable ones come from
    the default index, nightly and test ones from the PyTorch index's cpu directory.
    """
    given = getattr(selection, "index_url", None)
    if isinstance(given, str) and given:
        return given.rstrip("/")
    return family_index_url(
        _backend(selection),
        selection.channel,
        macos=host.system.os == "macos",
        torch_index=index.torch_index_url,
        default_index=index.default_index,
    )


def lock_inputs(
    requirements: Sequence[Requirement],
    host: HostReport,
    selection: SelectionLike,
    index: IndexConfig,
) -> LockInputs:
    variant = variant_of(_backend(selection))
    channel = selection.channel
    # A nightly is newer than any release the catalog names: take the newest one.
    release = getattr(selection, "torch", None) if channel != "nightly" else None
    return LockInputs(
        requirements=tuple(requirements) or parse_requirements(DEFAULT_REQUIREMENTS),
        target=target_of(host),
        variant=variant,
        channel=channel,
        torch_release=str(release) if release else None,
        torch_index=family_index(selection, host, index),
        default_index=index.default_index,
    )
