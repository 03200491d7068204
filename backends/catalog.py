"""The torch-backend catalog: shipped facts (data/*.json) merged with what the live index showed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torchenv.backends.vocabulary import Dotted, Kind, backend_kind, cuda_of, dotted, rocm_of

DATA_DIR = Path(__file__).with_name("data")
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")
LIVE_SCHEMA = 1
INFERRED_SHIPPED = "inferred (not read directly; the live index may correct it)"
INFERRED_LIVE = "inferred from the live index"


class CatalogError(ValueError):
    """The shipped or cached catalog data is inconsistent."""


@dataclass(frozen=True)
class Build:
    """One backend of one release on one platform, with the device code it carries."""

    backend: str
    kind: Kind
    sass: tuple[str, ...] = ()  # compute capabilities with SASS ("8.6")
    ptx: tuple[str, ...] = ()  # compute capabilities with PTX
    gfx: tuple[str, ...] = ()  # ROCm targets ("gfx942")
    inferred: str | None = None  # why this row is not a read fact, if it is not


@dataclass(frozen=True)
class Release:
    torch: str  # "2.14"
    python: tuple[str, ...]  # "3.12"
    python_ft: tuple[str, ...]  # free-threaded builds, "3.14" for cp314t
    glibc: str  # manylinux floor on Linux
    mps_macos: str
    pypi_default: str
    last_patch: int | None  # None: not known, any patch may exist
    family: tuple[tuple[str, str], ...]  # ("torchvision", "0.29")
    platforms: tuple[tuple[str, tuple[Build, ...]], ...]
    inferred: tuple[str, ...] = ()  # facts of the release itself that are inferred
    source: str = ""
    origin: str = "shipped"  # "shipped", "live", or a channel name

    @property
    def key(self) -> Dotted:
        return dotted(self.torch)

    def builds(self, platform: str) -> tuple[Build, ...]:
        return dict(self.platforms).get(platform, ())

    def build(self, platform: str, backend: str) -> Build | None:
        return next((b for b in self.builds(platform) if b.backend == backend), None)


@dataclass(frozen=True)
class DriverFloor:
    """The driver a CUDA version needs natively (Linux and Windows numbering)."""

    cuda: Dotted
    linux: Dotted
    windows: Dotted | None
    inferred: bool = False

    def for_os(self, os_name: str) -> tuple[Dotted, bool]:
        """(floor, inferred); Windows falls back to the Linux number where none is listed."""
        if os_name == "windows":
            return (self.windows, self.inferred) if self.windows else (self.linux, True)
        return self.linux, self.inferred


@dataclass(frozen=True)
class CompatFloor:
    """Minor-version compatibility: any CUDA `major`.x runs (SASS only) on this driver."""

    major: int
    linux: Dotted
    windows: Dotted | None

    def for_os(self, os_name: str) -> Dotted:
        return self.windows if os_name == "windows" and self.windows else self.linux


@dataclass(frozen=True)
class Channel:
    name: str
    torch: str
    like: str


@dataclass(frozen=True)
class Catalog:
    releases: tuple[Release, ...]  # stable releases, newest first
    drivers: tuple[DriverFloor, ...]  # oldest CUDA first
    compat: tuple[CompatFloor, ...]
    channels: tuple[Channel, ...]
    sources: tuple[str, ...]
    live_index: str | None = None
    live_fetched: str | None = None
    # (torch, platform, backend) seen on live_index by the last refresh (stable channel)
    live_seen: frozenset[tuple[str, str, str]] = frozenset()

    def release(self, torch: str) -> Release | None:
        return next((r for r in self.releases if r.torch == torch), None)

    def driver_floor(self, cuda: Dotted) -> DriverFloor | None:
        return next((d for d in self.drivers if d.cuda == cuda), None)

    def compat_floor(self, major: int) -> CompatFloor | None:
        return next((c for c in self.compat if c.major == major), None)

    def newest_cuda_for_driver(self, driver: Dotted, os_name: str) -> Dotted | None:
        """The newest CUDA whose native driver floor the driver meets (None: older than all)."""
        met = [d.cuda for d in self.drivers if d.for_os(os_name)[0] <= driver]
        return max(met) if met else None

    def releases_for(self, channel: str) -> tuple[Release, ...]:
        """Stable: the releases. test/nightly: the next release, built like the newest one."""
        if channel == "stable":
            return self.releases
        info = next((c for c in self.channels if c.name == channel), None)
        if info is None:
            raise CatalogError(f"unknown channel {channel!r}")
        like = self.release(info.like) or self.releases[0]
        note = f"{channel} builds assumed to follow torch {like.torch}"
        platforms = tuple(
            (p, tuple(replace(b, inferred=b.inferred or note) for b in builds))
            for p, builds in like.platforms
        )
        upcoming = replace(
            like,
            torch=info.torch,
            platforms=platforms,
            last_patch=0,
            family=_next_family(like.family, info.torch),
            origin=channel,
            inferred=(*like.inferred, "backends"),
        )
        return (upcoming,)


def _next_family(family: tuple[tuple[str, str], ...], torch: str) -> tuple[tuple[str, str], ...]:
    """torchvision 0.(minor+15), torchaudio = torch: extrapolated for a release not in the data."""
    minor = dotted(torch)[1]
    known = dict(family)
    out = dict(known)
    if "torchvision" in known:
        out["torchvision"] = f"0.{minor + 15}"
    if "torchaudio" in known:
        out["torchaudio"] = torch
    return tuple(out.items())


# --- loading the shipped data -------------------------------------------------------------


def _read(name: str) -> dict[str, Any]:
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _in_range(torch: str, bounds: list[str | None]) -> bool:
    low, high = bounds
    key = dotted(torch)
    return (low is None or key >= dotted(low)) and (high is None or key <= dotted(high))


@dataclass(frozen=True)
class _ArchRow:
    backend: str
    low: str | None
    high: str | None
    platforms: tuple[str, ...]
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    inferred: bool


def _arch_rows(cuda: Mapping[str, Any]) -> tuple[_ArchRow, ...]:
    return tuple(
        _ArchRow(
            row["backend"],
            row["releases"][0],
            row["releases"][1],
            tuple(row["platforms"]),
            tuple(row["sass"]),
            tuple(row["ptx"]),
            bool(row.get("inferred")),
        )
        for row in cuda["builds"]
    )


@dataclass(frozen=True)
class _Facts:
    arch: tuple[_ArchRow, ...]
    gfx: Mapping[str, tuple[tuple[str, ...], bool]]


def _make_build(
    facts: _Facts, torch: str, platform: str, backend: str, inferred: str | None
) -> Build:
    kind = backend_kind(backend)
    if kind is None:
        raise CatalogError(f"torch {torch} on {platform}: unknown backend name {backend!r}")
    if kind is Kind.CUDA:
        rows = [
            r
            for r in facts.arch
            if r.backend == backend
            and platform in r.platforms
            and _in_range(torch, [r.low, r.high])
        ]
        if not rows:
            raise CatalogError(f"torch {torch} {backend} on {platform}: no GPU code listed")
        row = rows[0]
        return Build(
            backend,
            kind,
            sass=row.sass,
            ptx=row.ptx,
            inferred=inferred or (INFERRED_SHIPPED if row.inferred else None),
        )
    if kind is Kind.ROCM:
        if backend not in facts.gfx:
            raise CatalogError(f"torch {torch} {backend}: no gfx list")
        gfx, gfx_inferred = facts.gfx[backend]
        return Build(
            backend,
            kind,
            gfx=gfx,
            inferred=inferred or (INFERRED_SHIPPED if gfx_inferred else None),
        )
    return Build(backend, kind, inferred=inferred)


def _make_release(facts: _Facts, row: Mapping[str, Any]) -> Release:
    torch = row["torch"]
    marked = set(row.get("inferred", ()))
    platforms = []
    for platform, backends in row["platforms"].items():
        if platform not in PLATFORMS:
            raise CatalogError(f"torch {torch}: unknown platform {platform!r}")
        builds = tuple(
            _make_build(facts, torch, platform, b, INFERRED_SHIPPED if b in marked else None)
            for b in backends
        )
        platforms.append((platform, builds))
    return Release(
        torch=torch,
        python=tuple(row["python"]),
        python_ft=tuple(row["python_ft"]),
        glibc=row["glibc"],
        mps_macos=row["mps_macos"],
        pypi_default=row["pypi_default"],
        last_patch=row["last_patch"],
        family=tuple(row["family"].items()),
        platforms=tuple(platforms),
        inferred=tuple(m for m in row.get("inferred", ()) if backend_kind(m) is None),
        source=row["source"],
    )


def _load_facts() -> _Facts:
    cuda, rocm = _read("cuda.json"), _read("rocm.json")
    return _Facts(
        arch=_arch_rows(cuda),
        gfx={b["backend"]: (tuple(b["gfx"]), bool(b.get("inferred"))) for b in rocm["builds"]},
    )


def load_catalog(live: Mapping[str, Any] | None = None) -> Catalog:
    """The shipped catalog, merged with a `catalog refresh` result when one is given."""
    cuda, rocm, rel = _read("cuda.json"), _read("rocm.json"), _read("releases.json")
    facts = _load_facts()
    releases = tuple(
        sorted(
            (_make_release(facts, r) for r in rel["releases"]), key=lambda r: r.key, reverse=True
        )
    )
    drivers = tuple(
        sorted(
            (
                DriverFloor(
                    dotted(d["cuda"]),
                    dotted(d["linux"]),
                    dotted(d["windows"]) if d["windows"] else None,
                    bool(d.get("inferred")),
                )
                for d in cuda["drivers"]
            ),
            key=lambda d: d.cuda,
        )
    )
    compat = tuple(
        CompatFloor(c["major"], dotted(c["linux"]), dotted(c["windows"]) if c["windows"] else None)
        for c in cuda["minor_version_compat"]
    )
    channels = tuple(Channel(name, c["torch"], c["like"]) for name, c in rel["channels"].items())
    sources = tuple(
        f"{key}: {text}" for data in (cuda, rocm, rel) for key, text in data["sources"].items()
    )
    catalog = Catalog(releases, drivers, compat, channels, tuple(dict.fromkeys(sources)))
    return merge_live(catalog, facts, live) if live else catalog


# --- merging what `catalog refresh` learnt ------------------------------------------------


def merge_live(catalog: Catalog, facts: _Facts, live: Mapping[str, Any]) -> Catalog:
    """Add the releases and backends the live index has and the shipped facts lack.

    Nothing shipped is removed; `live_seen` records what the index held when `catalog
    refresh` read it (`catalog show` reports it; selection reads the index itself). What is
    added borrows the device code of the nearest shipped build and is flagged as inferred
    from the live index.
    """
    if not isinstance(live, Mapping):
        raise CatalogError(f"the live catalog is a {type(live).__name__}, not an object")
    if live.get("schema") != LIVE_SCHEMA:
        raise CatalogError(f"live catalog schema {live.get('schema')!r} is not {LIVE_SCHEMA}")
    rows = list(live.get("wheels", ()))
    merged = _add_rows(catalog, facts, rows)
    seen_builds = frozenset(
        (row["torch"], row["platform"], row["backend"])
        for row in rows
        if row["platform"] in PLATFORMS and backend_kind(row["backend"]) is not None
    )
    return replace(
        merged,
        live_index=live.get("index"),
        live_fetched=live.get("fetched"),
        live_seen=seen_builds,
    )


def add_listed(catalog: Catalog, rows: Iterable[Mapping[str, Any]]) -> Catalog:
    """The catalog with what an index lists and the shipped facts lack (the rows of
    `Availability.rows()`), added conservatively as `merge_live` does."""
    return _add_rows(catalog, _load_facts(), list(rows))


def _add_rows(catalog: Catalog, facts: _Facts, rows: Iterable[Mapping[str, Any]]) -> Catalog:
    by_torch = {r.torch: r for r in catalog.releases}
    seen: dict[str, dict[str, list[str]]] = {}
    pythons: dict[str, set[str]] = {}
    ft: dict[str, set[str]] = {}
    for row in rows:
        torch, platform, backend = row["torch"], row["platform"], row["backend"]
        if platform not in PLATFORMS or backend_kind(backend) is None:
            continue
        seen.setdefault(torch, {}).setdefault(platform, []).append(backend)
        pythons.setdefault(torch, set()).update(row.get("python", ()))
        ft.setdefault(torch, set()).update(row.get("python_ft", ()))
    if not seen:
        return catalog
    for torch, platforms in seen.items():
        base = by_torch.get(torch)
        if base is None:
            base = _new_release(catalog, torch, pythons[torch], ft.get(torch, set()))
        by_torch[torch] = _add_builds(catalog, facts, base, platforms)
    releases = tuple(sorted(by_torch.values(), key=lambda r: r.key, reverse=True))
    return replace(catalog, releases=releases)


def _new_release(catalog: Catalog, torch: str, python: set[str], ft: set[str]) -> Release:
    newest = catalog.releases[0]
    return replace(
        newest,
        torch=torch,
        python=tuple(sorted(python, key=dotted)) or newest.python,
        python_ft=tuple(sorted(ft, key=dotted)),
        last_patch=None,
        family=_next_family(newest.family, torch),
        platforms=(),
        inferred=("glibc", "mps_macos", "pypi_default", "family"),
        source=INFERRED_LIVE,
        origin="live",
    )


def _add_builds(
    catalog: Catalog, facts: _Facts, release: Release, platforms: Mapping[str, Iterable[str]]
) -> Release:
    current = dict(release.platforms)
    for platform, backends in platforms.items():
        builds = list(current.get(platform, ()))
        for backend in dict.fromkeys(backends):
            if any(b.backend == backend for b in builds):
                continue
            builds.append(_borrowed_build(catalog, facts, release.torch, platform, backend))
        current[platform] = tuple(builds)
    return replace(release, platforms=tuple(current.items()))


def _borrowed_build(
    catalog: Catalog, facts: _Facts, torch: str, platform: str, backend: str
) -> Build:
    """A build the shipped facts do not list: device code from the closest shipped build."""
    kind = backend_kind(backend)
    assert kind is not None
    if kind is Kind.CUDA:
        same = [b for r in catalog.releases for b in r.builds(platform) if b.backend == backend]
        major = [
            b
            for r in catalog.releases
            for b in r.builds(platform)
            if b.kind is Kind.CUDA and cuda_of(b.backend)[0] == cuda_of(backend)[0]
        ]
        donor = (
            same[0] if same else (max(major, key=lambda b: cuda_of(b.backend)) if major else None)
        )
        if donor is None:
            return Build(backend, kind, inferred=INFERRED_LIVE + "; device code unknown")
        return Build(backend, kind, sass=donor.sass, ptx=(), inferred=INFERRED_LIVE)
    if kind is Kind.ROCM:
        if backend in facts.gfx:
            return Build(backend, kind, gfx=facts.gfx[backend][0], inferred=INFERRED_LIVE)
        older = [
            (rocm_of(name), gfx)
            for name, (gfx, _) in facts.gfx.items()
            if rocm_of(name) < rocm_of(backend)
        ]
        gfx = max(older)[1] if older else ()
        return Build(backend, kind, gfx=gfx, inferred=INFERRED_LIVE)
    return Build(backend, kind, inferred=INFERRED_LIVE)
