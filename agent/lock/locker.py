"""The exact-target lock: the torch family from the PyTorch index, the rest through a resolver."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from torchenv.agent import __version__
from torchenv.agent.base.errors import LockFileError, ResolutionError
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.lock.pylock import LockedPackage, LockedWheel, PyLock, target_changes, toml_safe
from torchenv.agent.lock.resolvers import Resolver, ResolveRequest, Target, target_of
from torchenv.agent.lock.resolvers.base import Pin
from torchenv.agent.lock.resolvers.standin import direct_reference, write_standin
from torchenv.backends.vocabulary import FAMILY, LABELLED, family_index_url, label_ok, variant_of
from torchenv.probes.report import HostReport

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.index.client import Artifact, CoreMetadata, IndexClient

# How a lock is made (issue 4):
# 1. The torch family is chosen here, from the selection's index only: torch newest first
#    within the selection's release and the user's specifiers (pre-releases on nightly/test),
#    with the variant's local label (or none: macOS, some aarch64), the target's best wheel
#    tag; then each other member (torchvision, torchaudio, pytorch-triton, ...) whose own
#    wheel's METADATA pins that torch. Metadata comes from the exact wheel the target
#    installs (PEP 658 file, else HTTP ranges: the index client never downloads a wheel
#    to read it).
# 2. The rest goes to a resolver (uv, else pip) for exactly the target, against the default
#    index only, with the family given as direct references to metadata-only stand-in
#    wheels carrying that METADATA: nothing can satisfy the family from anywhere else, and
#    whatever depends on torch resolves against exactly our build. A family member pulled in
#    by the rest is moved to the PyTorch index and the rest resolved again.
# 3. Hashes: index hashes are recorded as published; a wheel whose page has none (nightly)
#    is downloaded into the cache (`cache-dir`/wheels, where sync finds it) and hashed, so a
#    lock never lacks a sha256. Sizes missing from PEP 503 pages cost one HEAD request.
Fetch = Callable[["Artifact"], tuple[str, int]]  # download a file: (sha256, size)

DEFAULT_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
MAX_FAMILY_ATTEMPTS = 3  # torch versions tried when the rest cannot be resolved with one
METADATA_BATCH = 4  # candidates whose metadata is read at once when matching a torch build


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
    """Everything a lock depends on, resolved from settings and the selection."""

    requirements: tuple[Requirement, ...]
    target: Target
    variant: str  # "cu126", "cpu", ...
    channel: str
    torch_release: str | None  # "2.9": the selection's release, None for any
    torch_index: str  # the variant's simple-API root, e.g. …/whl/nightly/cu126
    default_index: str


# -- inputs ------------------------------------------------------------------------------------


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


def family_index(selection: SelectionLike, host: HostReport, settings: Settings) -> str:
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
        torch_index=settings.get_value("torch-index-url"),
        default_index=str(settings.get_value("index-url")).rstrip("/"),
    )


def lock_inputs(
    requirements: Sequence[Requirement],
    host: HostReport,
    selection: SelectionLike,
    settings: Settings,
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
        torch_index=family_index(selection, host, settings),
        default_index=str(settings.get_value("index-url")).rstrip("/"),
    )


# -- choosing family wheels (pure over pages and metadata) -------------------------------------


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


# -- the lock ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    name: str
    specifier: SpecifierSet
    extras: frozenset[str]


class _Locker:
    """One lock run: index client, resolver and a scratch directory."""

    def __init__(
        self,
        inputs: LockInputs,
        client: IndexClient,
        resolver: Resolver,
        reporter: Reporter,
        *,
        scratch: Path,
        pool: ThreadPoolExecutor,
        cache_dir: Path | None = None,
        wheels_dir: Path | None = None,
    ) -> None:
        self.inputs = inputs
        self.client = client
        self.resolver = resolver
        self.reporter = reporter
        self.scratch = scratch
        self.cache_dir = cache_dir
        self.pages: dict[tuple[str, str], list[Artifact]] = {}
        self.refetched: set[tuple[str, str]] = set()
        self.meta: dict[str, CoreMetadata] = {}  # by URL: one read per file per lock
        self.records: dict[str, Future[LockedWheel]] = {}  # family wheels, recorded early
        self.pool = pool
        self.fetch = _fetcher(client, wheels_dir or scratch / "wheels", reporter)

    def metadata_many(self, artifacts: Sequence[Artifact]) -> list[CoreMetadata]:
        missing = list({a.url: a for a in artifacts if a.url not in self.meta}.values())
        for artifact, meta in zip(missing, self.client.metadata_many(missing), strict=True):
            self.meta[artifact.url] = meta
        return [self.meta[a.url] for a in artifacts]

    def record_early(self, family: Mapping[str, FamilyChoice], fetch: Fetch) -> None:
        """Start hashing/sizing the family wheels while the resolver runs."""
        for choice in family.values():
            url = choice.artifact.url
            if url not in self.records:
                self.records[url] = self.pool.submit(locked_wheel, choice.artifact, fetch)

    def record(self, artifact: Artifact, fetch: Fetch) -> LockedWheel:
        future = self.records.get(artifact.url)
        if future is not None:
            return future.result()
        return locked_wheel(artifact, fetch)

    # pages
    def page(self, index: str, name: str) -> list[Artifact]:
        key = (index, name)
        if key not in self.pages:
            self.pages[key] = list(self.client.project_page(index, name))
        return self.pages[key]

    def refetch(self, index: str, name: str) -> bool:
        """Read a page again past the cache (once per page): a cached page that yields no
        wheel may be a short answer kept and revalidated. False when it was already fresh."""
        key = (index, name)
        if key in self.refetched:
            return False
        self.refetched.add(key)
        self.pages[key] = list(self.client.project_page(index, name, fresh=True))
        return True

    def prefetch(self, index: str, names: Iterable[str]) -> None:
        todo = [n for n in dict.fromkeys(names) if (index, n) not in self.pages]
        for name, page in self.client.project_pages(index, todo).items():
            self.pages[(index, name)] = list(page)

    # the family
    def family_asks(self) -> list[_Ask]:
        env = self.inputs.target.markers()
        _torch_applies(self.inputs, env)
        asks: dict[str, _Ask] = {}
        for req in self.inputs.requirements:
            name = canonicalize_name(req.name)
            if name not in FAMILY or not _marker_holds(req.marker, env):
                continue
            if req.url:
                raise ResolutionError(
                    f"{req.name} is given as a URL ({req.url})",
                    hint="torchenv takes the torch family from the selected PyTorch index; "
                    "give a version instead",
                )
            old = asks.get(name)
            asks[name] = _Ask(
                name,
                (old.specifier & req.specifier) if old else req.specifier,
                (old.extras if old else frozenset()) | frozenset(req.extras),
            )
        asks.setdefault("torch", _Ask("torch", SpecifierSet(), frozenset()))
        return sorted(asks.values(), key=lambda a: a.name != "torch")

    def families(self, extra: Iterable[_Ask] = ()) -> Iterator[dict[str, FamilyChoice]]:
        """Complete family choices, newest torch first."""
        asks = self.family_asks()
        known = {a.name for a in asks}
        asks += [a for a in extra if a.name not in known]
        index = self.inputs.torch_index
        self.prefetch(index, [a.name for a in asks])
        torch_ask = asks[0]
        torches = candidates(
            "torch", self.page(index, "torch"), self.inputs.target, torch_ask.specifier, self.inputs
        )
        if not torches and self.refetch(index, "torch"):
            torches = candidates("torch", self.page(index, "torch"), self.inputs.target,
                                 torch_ask.specifier, self.inputs)  # fmt: skip
        if not torches:
            raise self._nothing("torch", torch_ask.specifier)
        self._guess(torches[0], asks[1:])
        for artifact in torches[:MAX_FAMILY_ATTEMPTS]:
            meta = self.metadata_many([artifact])[0]
            chosen = {"torch": FamilyChoice("torch", artifact, meta, torch_ask.extras)}
            if self._complete(chosen, asks[1:]):
                yield chosen

    def _guess(self, torch: Artifact, asks: Sequence[_Ask]) -> None:
        """Read torch's metadata and that of the likeliest build of each other member at once."""
        guesses = [torch]
        for ask in asks:
            found = candidates(ask.name, self.page(self.inputs.torch_index, ask.name),
                               self.inputs.target, ask.specifier, self.inputs)  # fmt: skip
            assert torch.version is not None
            same = [a for a in found if _same_build(a.version, torch.version, torch.version.local)]
            guesses += same[:1]
        self.metadata_many(guesses)

    def _complete(self, chosen: dict[str, FamilyChoice], asks: list[_Ask]) -> bool:
        queue = list(asks) + self._family_deps(chosen["torch"], chosen)
        while queue:
            ask = queue.pop(0)
            if ask.name in chosen:
                if not ask.specifier.contains(chosen[ask.name].version, prereleases=True):
                    return False
                continue
            found = self._choose(ask, chosen)
            if found is None:
                if len(chosen) == 1 and ask in asks:
                    self.reporter.info(
                        f"no {ask.name} build for torch {chosen['torch'].version}; "
                        "trying an older torch"
                    )
                return False
            chosen[ask.name] = found
            queue += self._family_deps(found, chosen)
        return True

    def _family_deps(self, choice: FamilyChoice, chosen: Mapping[str, FamilyChoice]) -> list[_Ask]:
        out = []
        for req in active_requirements(choice.metadata, self.inputs.target, choice.extras):
            name = canonicalize_name(req.name)
            if name in FAMILY and name not in chosen:
                out.append(_Ask(name, req.specifier, frozenset(req.extras)))
        return out

    def _choose(self, ask: _Ask, chosen: Mapping[str, FamilyChoice]) -> FamilyChoice | None:
        index = self.inputs.torch_index
        found = candidates(ask.name, self.page(index, ask.name), self.inputs.target,
                           ask.specifier, self.inputs)  # fmt: skip
        if not found and self.refetch(index, ask.name):
            found = candidates(ask.name, self.page(index, ask.name), self.inputs.target,
                               ask.specifier, self.inputs)  # fmt: skip
        if not found:
            raise self._nothing(ask.name, ask.specifier)
        torch = chosen["torch"].version
        # Builds made for this torch first: same label and, for nightlies, the same day. A
        # nightly torchvision/torchaudio pins its own day's torch exactly, so only that day's
        # builds can fit and the others are never read (the nightly index keeps ~60 of each);
        # none that day: None, and an older torch is tried.
        found.sort(key=lambda a: not _same_build(a.version, torch, torch.local))
        if torch.dev is not None and ask.name in LABELLED:
            found = [a for a in found if _same_build(a.version, torch, torch.local)]
        for i, artifact in enumerate(found):
            if artifact.url not in self.meta:  # read this one and the next few at once
                self.metadata_many(found[i : i + METADATA_BATCH])
            meta = self.meta[artifact.url]
            target = self.inputs.target
            if python_ok(_text(meta.requires_python), target) and pins_family(meta, target, chosen):
                return FamilyChoice(ask.name, artifact, meta, ask.extras)
        return None

    def _nothing(self, name: str, specifier: SpecifierSet) -> ResolutionError:
        inputs = self.inputs
        wanted = f"{name}{specifier}" + (
            f" (torch {inputs.torch_release}.*)" if name == "torch" and inputs.torch_release else ""
        )
        return ResolutionError(
            f"{inputs.torch_index} has no {wanted} wheel for {inputs.target.describe()}",
            hint="choose another backend, channel or Python (`torchenv select --explain` "
            "lists them), or relax the version",
            details={
                "index": inputs.torch_index,
                "project": name,
                "specifier": str(specifier),
                "variant": inputs.variant,
            },
        )

    # the rest
    def resolve_rest(self, family: Mapping[str, FamilyChoice]) -> tuple[Pin, ...]:
        standins = self.scratch / f"standins-{len(list(self.scratch.iterdir()))}"
        refs = []
        for choice in family.values():
            data = choice.metadata.raw.encode("utf-8")
            path = write_standin(standins, choice.artifact.filename, data)
            refs.append(direct_reference(choice.name, choice.extras, path))
        rest = [str(r) for r in self.inputs.requirements if canonicalize_name(r.name) not in FAMILY]
        workdir = Path(tempfile.mkdtemp(dir=self.scratch, prefix="resolve-"))
        request = ResolveRequest(
            requirements=tuple(refs + rest),
            target=self.inputs.target,
            index_url=self.inputs.default_index,
            workdir=workdir,
            cache_dir=self.cache_dir,
            client=self.client,
        )
        return self.resolver.resolve(request).pins

    def artifact_for(self, pin: Pin) -> Artifact:
        target = self.inputs.target
        ranks = tag_rank(target)
        wanted = Version(pin.version)
        matches = [
            (rank, a)
            for a in self.page(self.inputs.default_index, pin.name)
            if a.is_wheel and a.version == wanted and (rank := best_rank(a, ranks)) is not None
        ]
        if not matches:
            raise ResolutionError(
                f"{self.inputs.default_index} has no {pin.name}=={pin.version} wheel for "
                f"{target.describe()}, though the {self.resolver.name} resolver chose it",
                hint="the index changed during the lock, or serves different files to "
                "different clients; run the lock again",
            )
        return min(matches, key=lambda m: m[0])[1]


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


# -- hashes and the lock document --------------------------------------------------------------


def _sha256(artifact: Artifact) -> str | None:
    value = artifact.hashes.get("sha256")
    return value.lower() if value else None


def locked_wheel(artifact: Artifact, fetch: Callable[[Artifact], tuple[str, int]]) -> LockedWheel:
    """The lock's record of a wheel.

    A wheel whose index publishes no sha256 (the nightly pages) is downloaded into the cache
    to hash it, so the lock never lacks a hash and sync finds the file there. A size is kept
    where the index lists one; PEP 751 makes it optional, so a page without sizes (PEP 503)
    costs no request for one (sync then bounds the download by MAX_WHEEL and the hash).
    """
    sha, size = _sha256(artifact), artifact.size
    if sha is None:
        sha, size = fetch(artifact)
    return LockedWheel(name=artifact.filename, url=artifact.url, size=size, sha256=sha)


def environment_marker(target: Target) -> str:
    env = target.markers()
    keys = ("sys_platform", "platform_machine", "implementation_name", "python_version")
    return " and ".join(f"{k} == '{env[k]}'" for k in keys)


def tool_table(
    inputs: LockInputs, host: HostReport, selection: SelectionLike, resolver: str
) -> dict[str, Any]:
    release = getattr(selection, "torch", None)
    reasons = getattr(selection, "reasons", ()) or ()
    skipped = getattr(selection, "skipped", ()) or ()
    return {
        "torchenv-version": __version__,
        "fingerprint": host.fingerprint(),
        "target": toml_safe(host.target_facts()),
        "backend": selection.backend,
        "torch": str(release) if release else "",
        "channel": inputs.channel,
        "torch-index-url": inputs.torch_index,
        "index-url": inputs.default_index,
        "requirements": [str(r) for r in inputs.requirements],
        "resolver": resolver,
        "reasons": [str(r) for r in reasons],
        "skipped": [str(r) for r in skipped],  # better builds the index does not hold
        "python": inputs.target.python_minor,
    }


def lock_for(
    requirements: Sequence[Requirement | str],
    host: HostReport,
    selection: SelectionLike,
    settings: Settings,
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
    inputs = lock_inputs(reqs, host, selection, settings)
    cache = Path(settings.get_value("cache-dir"))
    with (
        tempfile.TemporaryDirectory(prefix="torchenv-lock-") as scratch,
        reporter.stage("lock", inputs.target.describe()),
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="lock") as pool,
    ):
        locker = _Locker(
            inputs, client, resolver, reporter, scratch=Path(scratch), pool=pool,
            cache_dir=cache / "resolver", wheels_dir=cache / "wheels",
        )  # fmt: skip
        family, pins = _resolve(locker)
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


def _fetcher(
    client: IndexClient, directory: Path, reporter: Reporter
) -> Callable[[Artifact], tuple[str, int]]:
    """Download a wheel to hash it, and leave it where sync looks for it (by its sha256)."""

    def fetch(artifact: Artifact) -> tuple[str, int]:
        from torchenv.agent.env.sync import cached_wheel
        from torchenv.agent.index.client import sha256_of

        reporter.info(f"{artifact.filename}: the index publishes no hash; downloading to hash it")
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".lock-") as scratch:
            path = client.download(artifact, Path(scratch))
            digest, size = sha256_of(path), path.stat().st_size
            dest = cached_wheel(directory, digest, path.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        return digest, size

    return fetch


# -- --check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    fact: str
    locked: Any
    host: Any


def check_lock(lock: PyLock, host: HostReport) -> list[Difference]:
    """The target facts in which the host differs from the one the lock was made for."""
    table = lock.tool_torchenv
    if "fingerprint" not in table:
        raise LockFileError(
            "the lock has no [tool.torchenv] fingerprint",
            hint="it was not written by torchenv; regenerate it with `torchenv lock`",
        )
    if table["fingerprint"] == host.fingerprint():
        return []
    locked = table.get("target")
    changes = target_changes(locked if isinstance(locked, Mapping) else {}, host.target_facts())
    diffs = [Difference(*change) for change in changes]
    return diffs or [Difference("fingerprint", table["fingerprint"], host.fingerprint())]
