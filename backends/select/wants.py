"""What a request's requirements ask of the torch family: specifiers and a build's label."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torchenv.backends.catalog import Release
from torchenv.backends.select.model import InvalidRequest
from torchenv.backends.vocabulary import CATALOGUED, CHANNELS, backend_kind

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet


BARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Wants:
    """The torch-family constraints of a request: (project, specifier set) pairs."""

    specs: tuple[tuple[str, SpecifierSet], ...] = ()
    prereleases: bool = False
    backend: str | None = None  # named by a local label: torch==2.13.0+cpu -> "cpu"

    def text(self) -> str:
        return ", ".join(f"{name}{spec}" for name, spec in self.specs if str(spec))

    def allows(self, release: Release) -> bool:
        family = dict(release.family)
        for name, spec in self.specs:
            base = release.torch if name == "torch" else family.get(name)
            if base is None:
                return False
            if not any(
                spec.contains(v, prereleases=self.prereleases) for v in _versions(base, release)
            ):
                return False
        return True


def _versions(base: str, release: Release) -> list[str]:
    if release.origin == "nightly":
        return [f"{base}.0.dev0"]
    if release.origin == "test":
        return [f"{base}.0rc1"]
    last = release.last_patch if release.last_patch is not None else 9
    return [f"{base}.{patch}" for patch in range(last + 1)]


def parse_wants(requirements: Iterable[str], channel: str = "stable") -> Wants:
    if channel not in CHANNELS:
        raise InvalidRequest(f"unknown channel {channel!r} (use {', '.join(CHANNELS)})")
    specs = []
    labels: dict[str, str] = {}  # backend -> the requirement that named it
    for text in requirements:
        if BARE_NAME.fullmatch(text.strip()):
            continue  # a name alone constrains nothing (and needs no parser)
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise InvalidRequest(f"{text!r} is not a requirement: {exc}") from exc
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in CATALOGUED and str(req.specifier):
            spec, label = _without_local_label(req.specifier, text)
            if label is not None:
                labels.setdefault(label, text)
            specs.append((name, spec))
    if len(labels) > 1:
        raise InvalidRequest(
            "the requirements name different builds: " + ", ".join(sorted(labels.values()))
        )
    backend = next(iter(labels), None)
    return Wants(tuple(specs), prereleases=channel != "stable", backend=backend)


def _without_local_label(spec: SpecifierSet, text: str) -> tuple[SpecifierSet, str | None]:
    """`==2.13.0+cpu` -> (`==2.13.0`, "cpu"): releases are matched on the public version and
    the label chooses the backend, as pip would when installing from that backend's index."""
    from packaging.specifiers import SpecifierSet

    label = None
    public = []
    for item in spec:
        version, _, local = item.version.partition("+")
        if local:
            if backend_kind(local) is None:
                raise InvalidRequest(f"{text!r}: the local label +{local} names no torch backend")
            label = local
        public.append(f"{item.operator}{version}")
    return SpecifierSet(",".join(public)), label
