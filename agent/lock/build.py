"""Making a lock: the family chosen, the rest resolved, every wheel with its hash, a PyLock."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock
from torchenv.agent.lock.resolvers import resolver_cache
from torchenv.agent.lock.resolvers.base import Pin, Resolver, ResolveRequest
from torchenv.backends.vocabulary import FAMILY
from torchenv.probes.report import HostReport

if TYPE_CHECKING:
    from torchenv.agent.base.options import IndexConfig
    from torchenv.agent.index.client import IndexClient

from torchenv.agent.lock.entries import environment_marker, locked_wheel, tool_table
from torchenv.agent.lock.inputs import (
    FamilyChoice,
    SelectionLike,
    lock_inputs,
    parse_requirements,
)
from torchenv.agent.lock.locker import _Ask, _Locker


def lock_for(
    requirements: Sequence[Requirement | str],
    host: HostReport,
    selection: SelectionLike,
    index: IndexConfig,
    *,
    resolver: Resolver,
    client: IndexClient,
    reporter: Reporter | None = None,
) -> PyLock:
    """Lock the requirements for exactly this host and selection (nothing is written)."""
    reporter = reporter or Reporter()
    reqs = tuple(
        r if isinstance(r, Requirement) else parse_requirements([r])[0] for r in requirements
    )
    inputs = lock_inputs(reqs, host, selection, index)
    cache = index.cache_dir
    resolver.prepare(resolver_cache(index))  # started earlier by lock_selected: a no-op then
    with (
        tempfile.TemporaryDirectory(prefix="torchenv-lock-") as scratch,
        reporter.stage("lock", inputs.target.describe()),
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="lock") as pool,
    ):
        locker = _Locker(
            inputs, client, resolver, reporter, scratch=Path(scratch), pool=pool,
            cache_dir=resolver_cache(index), wheels_dir=cache / "wheels",
        )  # fmt: skip
        # the resolver will run for this target and index: its start-up overlaps ours
        resolver.start(ResolveRequest((), inputs.target, inputs.default_index, Path(scratch),
                                      resolver_cache(index)))  # fmt: skip
        try:
            family, pins = _resolve(locker)
        finally:
            resolver.close()
        packages = _packages(locker, family, pins)
    return PyLock(
        packages=tuple(packages),
        requires_python=f"=={inputs.target.python_minor}.*",
        environments=(environment_marker(inputs.target),),
        tool_torchenv=tool_table(inputs, host, selection, resolver.name),
    )


def _resolve(locker: _Locker) -> tuple[dict[str, FamilyChoice], tuple[Pin, ...]]:
    extra: list[_Ask] = []
    for _ in range(3):  # rounds: a non-family package may pull in another family member
        last: ResolutionError | None = None
        for family in locker.families(extra):
            locker.record_early(family, locker.fetch)
            try:
                pins = locker.resolve_rest(family)
            except ResolutionError as exc:
                if not any(name in exc.message for name in family):
                    raise
                last = exc
                continue
            strays = [p for p in pins if p.name in FAMILY and p.name not in family]
            if not strays:
                return family, pins
            locker.reporter.info(
                "also taking " + ", ".join(p.name for p in strays) + " from the PyTorch index"
            )
            extra += [_Ask(p.name, SpecifierSet(), frozenset()) for p in strays]
            break
        else:
            if last is not None:
                raise last
            raise locker._nothing("torch", SpecifierSet())
    raise ResolutionError(
        "the torch family kept growing while resolving",
        hint="list every torch* package you need explicitly",
    )


def _packages(
    locker: _Locker, family: Mapping[str, FamilyChoice], pins: Sequence[Pin]
) -> list[LockedPackage]:
    inputs = locker.inputs
    rest = [p for p in pins if p.name not in family]
    lookup = [p for p in rest if p.wheel is None or p.wheel.sha256 is None]
    locker.prefetch(inputs.default_index, [p.name for p in lookup])
    deps = {p.name: p.dependencies for p in pins}
    out = [
        LockedPackage(name=name, version=str(c.version), index=inputs.torch_index,
                      wheels=(locker.record(c.artifact, locker.fetch),),
                      dependencies=deps.get(name, ()))
        for name, c in family.items()
    ]  # fmt: skip
    wheels = locker.client.map(lambda p: _rest_wheel(locker, p), rest)
    out += [
        LockedPackage(name=p.name, version=p.version, index=inputs.default_index, wheels=(w,),
                      dependencies=p.dependencies)
        for p, w in zip(rest, wheels, strict=True)
    ]  # fmt: skip
    return out


def _rest_wheel(locker: _Locker, pin: Pin) -> LockedWheel:
    """The resolver's own record of the wheel when it has a hash, else the index page's."""
    ref = pin.wheel
    if ref is not None and ref.sha256 is not None:
        return LockedWheel(name=ref.filename, url=ref.url, size=ref.size, sha256=ref.sha256)
    return locked_wheel(locker.artifact_for(pin), locker.fetch)
