"""The catalog as data: builds, releases, driver floors and channels, with their rules."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torchenv.backends.vocabulary import Dotted, Kind, dotted

PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")


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
    """One torch release: its Pythons, glibc and macOS floors, family, and builds per platform."""

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
    """A prerelease channel (test, nightly): its torch version, built like release `like`."""

    name: str
    torch: str
    like: str


@dataclass(frozen=True)
class Catalog:
    """The whole catalog: releases, driver floors, channels, and what the live index last showed."""

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
            family=next_family(like.family, info.torch),
            origin=channel,
            inferred=(*like.inferred, "backends"),
        )
        return (upcoming,)


def next_family(family: tuple[tuple[str, str], ...], torch: str) -> tuple[tuple[str, str], ...]:
    """torchvision 0.(minor+15), torchaudio = torch: extrapolated for a release not in the data."""
    minor = dotted(torch)[1]
    known = dict(family)
    out = dict(known)
    if "torchvision" in known:
        out["torchvision"] = f"0.{minor + 15}"
    if "torchaudio" in known:
        out["torchaudio"] = torch
    return tuple(out.items())
