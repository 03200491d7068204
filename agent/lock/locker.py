"""The exact-target lock: the torch family from the PyTorch index, the rest through a resolver."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from torchenv.agent.base.errors import ResolutionError
from torchenv.agent.base.reporter import Reporter
from torchenv.agent.lock.pylock import LockedWheel
from torchenv.agent.lock.resolvers.base import Pin, Resolver, ResolveRequest
from torchenv.agent.lock.resolvers.standin import direct_reference, write_standin
from torchenv.backends.vocabulary import FAMILY, LABELLED

if TYPE_CHECKING:
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.index.model import Artifact, CoreMetadata
from torchenv.agent.lock.entries import _fetcher, locked_wheel
from torchenv.agent.lock.family import (
    _marker_holds,
    _same_build,
    _text,
    _torch_applies,
    active_requirements,
    best_rank,
    candidates,
    pins_family,
    python_ok,
    tag_rank,
)
from torchenv.agent.lock.inputs import (
    FamilyChoice,
    LockInputs,
)

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

MAX_FAMILY_ATTEMPTS = 3  # torch versions tried when the rest cannot be resolved with one
METADATA_BATCH = 4  # candidates whose metadata is read at once when matching a torch build


# -- inputs ------------------------------------------------------------------------------------


# -- choosing family wheels (pure over pages and metadata) -------------------------------------


# -- the lock ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    """One torch-family project asked for: the specifier and extras its wheel must satisfy."""

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
        names = [a.name for a in asks]
        self.client.read_ahead(index, [n for n in names if (index, n) not in self.pages])
        torch_ask = asks[0]
        torches = candidates(
            "torch", self.page(index, "torch"), self.inputs.target, torch_ask.specifier, self.inputs
        )
        # torch's metadata is read while the other members' pages are (from a wheel without a
        # metadata file: two range reads, the tail then METADATA, beside a page and a tail)
        early = None
        if torches and len(asks) > 1:
            early = self.pool.submit(self.metadata_many, torches[:1])
        self.prefetch(index, names)
        if not torches and self.refetch(index, "torch"):
            torches = candidates("torch", self.page(index, "torch"), self.inputs.target,
                                 torch_ask.specifier, self.inputs)  # fmt: skip
        if not torches:
            raise self._nothing("torch", torch_ask.specifier)
        self._guess(torches[0], asks[1:], early)
        for artifact in torches[:MAX_FAMILY_ATTEMPTS]:
            meta = self.metadata_many([artifact])[0]
            chosen = {"torch": FamilyChoice("torch", artifact, meta, torch_ask.extras)}
            if self._complete(chosen, asks[1:]):
                yield chosen

    def _guess(
        self, torch: Artifact, asks: Sequence[_Ask], early: Future[list[CoreMetadata]] | None = None
    ) -> None:
        """Read torch's metadata (unless `early` is reading it) and that of the likeliest
        build of each other member at once; torch's error first, as when read together."""
        guesses = [] if early is not None else [torch]
        for ask in asks:
            found = candidates(ask.name, self.page(self.inputs.torch_index, ask.name),
                               self.inputs.target, ask.specifier, self.inputs)  # fmt: skip
            assert torch.version is not None
            same = [a for a in found if _same_build(a.version, torch.version, torch.version.local)]
            guesses += same[:1]
        try:
            self.metadata_many(guesses)
        finally:
            if early is not None:
                early.result()

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


# -- hashes and the lock document --------------------------------------------------------------


# -- --check -----------------------------------------------------------------------------------
