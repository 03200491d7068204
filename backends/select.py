"""The pure selection: which torch release and backend fit a host, and why each other does not."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from torchenv.backends.availability import (
    Availability,
    IndexListing,
    listed_backend,
    version_key,
)
from torchenv.backends.catalog import Build, Catalog, Release
from torchenv.backends.vocabulary import (
    CATALOGUED,
    Dotted,
    Kind,
    backend_kind,
    backend_order,
    cuda_of,
    dotted,
    family_index_url,
    show,
)
from torchenv.probes.report import HostReport, NvidiaState

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

VENDOR_RANK = {Kind.CUDA: 0, Kind.ROCM: 1, Kind.XPU: 2, Kind.MPS: 0, Kind.CPU: 9}
CHANNELS = ("stable", "test", "nightly")
BARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InvalidRequest(ValueError):
    """A requirement string or channel that cannot be understood."""


class Flag(str, enum.Enum):
    MINOR_VERSION_COMPAT = "minor-version-compat"
    PTX_ONLY = "ptx-only"
    INFERRED = "inferred"
    CC_UNKNOWN = "cc-unknown"
    FORCED = "forced"


@dataclass(frozen=True)
class Request:
    requirements: tuple[str, ...] = ("torch",)
    channel: str = "stable"
    backend: str | None = None  # None or "auto": choose
    torch_index_url: str = "https://download.pytorch.org/whl"
    default_index_url: str = "https://pypi.org/simple"


@dataclass(frozen=True)
class Candidate:
    torch: str
    backend: str
    ok: bool
    reasons: tuple[str, ...]
    flags: tuple[Flag, ...] = ()
    unlock: tuple[str, ...] = ()  # what would make this candidate usable
    host_ok: bool = True  # runs on the host, whatever the user's constraints say
    request_ok: bool = True  # allowed by the user's constraints
    rank: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    index_url: str | None = field(default=None, compare=False)  # where this build comes from
    unavailable: str | None = None  # why the index does not have it (when that is why not)

    @property
    def accelerated(self) -> bool:
        return backend_kind(self.backend) not in (Kind.CPU, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "torch": self.torch,
            "backend": self.backend,
            "ok": self.ok,
            "reasons": list(self.reasons),
            "flags": [f.value for f in self.flags],
            "index_url": self.index_url,
        }


@dataclass(frozen=True)
class Selection:
    ok: bool
    backend: str | None
    torch: str | None
    index_url: str | None
    channel: str
    platform: str | None
    python: str
    candidates: tuple[Candidate, ...]
    reasons: tuple[str, ...] = ()  # why the chosen candidate, or why nothing fits
    warnings: tuple[str, ...] = ()
    unlock: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    skipped: tuple[str, ...] = ()  # better-ranked builds the index does not hold, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "torch": self.torch,
            "index_url": self.index_url,
            "channel": self.channel,
            "platform": self.platform,
            "python": self.python,
            "flags": [f.value for f in self.flags],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "unlock": list(self.unlock),
            "skipped": list(self.skipped),
            "candidates": [c.to_json() for c in self.candidates],
        }


# --- the request --------------------------------------------------------------------------


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


# --- what the host offers -----------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    label: str  # "GPU 0 (NVIDIA GeForce RTX 5090, sm 12.0)"
    cc: Dotted | None
    sass_in: tuple[str, ...] = ()  # the backends that carry SASS for it, in any release


@dataclass(frozen=True)
class Nvidia:
    """The NVIDIA facts selection needs, or why CUDA cannot be used at all."""

    present: bool
    blocked: str | None  # a reason no CUDA build can run now
    unblock: str | None
    driver: Dotted | None
    driver_text: str | None
    cuda: Dotted | None  # newest CUDA the driver runs natively
    cuda_measured: bool  # from the driver itself, not derived from the version
    gpus: tuple[Gpu, ...]


@dataclass(frozen=True)
class Host:
    os: str
    platform: str | None
    python: str
    free_threaded: bool
    glibc: Dotted | None
    musl: bool
    nvidia: Nvidia
    amd_gfx: tuple[str, ...]
    amd_ready: bool
    rocm: str | None
    intel: bool
    apple_silicon: bool
    macos: Dotted | None
    notes: tuple[str, ...]  # warnings about the host itself

    @property
    def python_label(self) -> str:
        """ "3.13t" for a free-threaded 3.13, else "3.13"."""
        return self.python + ("t" if self.free_threaded else "")


def _platform(report: HostReport) -> str | None:
    os_name, arch = report.system.os, report.cpu.arch
    if os_name == "macos":
        if report.apple.rosetta or arch == "x86_64":
            return "macos-x86_64"
        return "macos-arm64" if arch in ("arm64", "aarch64") else None
    key = f"{os_name}-{'aarch64' if arch == 'arm64' else arch}"
    return key if key in ("linux-x86_64", "linux-aarch64", "windows-x86_64") else None


def _parse(text: str | None) -> Dotted | None:
    if not text:
        return None
    try:
        return dotted(text)
    except ValueError:
        return None


def _cc(text: str | None) -> Dotted | None:
    value = _parse(text)
    return value if value is not None and len(value) == 2 else None


def _nvidia(report: HostReport, catalog: Catalog) -> Nvidia:
    nv = report.nvidia
    driver = _parse(nv.driver_version)
    measured = _parse(nv.cuda_driver_version)
    cuda = measured or (
        catalog.newest_cuda_for_driver(driver, report.system.os) if driver else None
    )
    gpus = tuple(
        Gpu(
            f"GPU {g.index} ({g.name + ', ' if g.name else ''}sm {g.compute_capability or '?'})",
            _cc(g.compute_capability),
        )
        for g in sorted(nv.gpus, key=lambda g: (_cc(g.compute_capability) or (), g.index))
    )
    present = nv.state is not NvidiaState.ABSENT or bool(nv.gpus)
    blocked, unblock = None, None
    if nv.state is NvidiaState.TEGRA or nv.tegra_model:
        blocked = (
            "Jetson/Tegra boards are not served by the standard PyTorch index; use "
            "NVIDIA's JetPack wheels for CUDA"
        )
        unblock = "install NVIDIA's Jetson wheels for your JetPack release"
    elif nv.state is NvidiaState.NO_DRIVER:
        blocked, unblock = "NVIDIA GPU present but no driver installed", "install the NVIDIA driver"
    elif nv.state is NvidiaState.NOT_LOADED:
        blocked = "the NVIDIA driver is installed but not loaded, so CUDA cannot run now"
        unblock = "load the NVIDIA driver (reboot or `modprobe nvidia`) and select again"
    elif not nv.gpus and nv.hidden_gpus:
        blocked = f"all {nv.hidden_gpus} NVIDIA GPUs are hidden by *_VISIBLE_DEVICES"
        unblock = "make a GPU visible (CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES)"
    elif present and driver is None and cuda is None:
        blocked, unblock = "the NVIDIA driver version is unknown", "pass --driver VERSION"
    ignored = [r for r in nv.reasons if r.endswith("; ignored")]  # a rejected override
    if blocked and ignored:
        blocked += " (" + "; ".join(ignored) + ")"
        unblock = f"{unblock}, or correct the override"
    return Nvidia(
        present, blocked, unblock, driver, nv.driver_version, cuda, measured is not None, gpus
    )


def _with_sass(nvidia: Nvidia, catalog: Catalog, platform: str | None) -> Nvidia:
    builds = [b for r in catalog.releases for b in r.builds(platform or "") if b.kind is Kind.CUDA]
    gpus = []
    for gpu in nvidia.gpus:
        cc = gpu.cc
        found = {b.backend for b in builds if cc is not None and _covers(b, cc) == "sass"}
        gpus.append(replace(gpu, sass_in=tuple(sorted(found, key=backend_order))))
    return replace(nvidia, gpus=tuple(gpus))


def _host(report: HostReport, catalog: Catalog) -> Host:
    notes = []
    nvidia = _with_sass(_nvidia(report, catalog), catalog, _platform(report))
    if nvidia.blocked:
        notes.append(nvidia.blocked)
    unknown = not nvidia.gpus or any(g.cc is None for g in nvidia.gpus)
    state = report.nvidia.state
    if nvidia.present and not nvidia.blocked and unknown and state is not NvidiaState.OK:
        notes.append(
            f"NVIDIA state is {report.nvidia.state.value}: GPUs could not be enumerated, "
            "so their compute capability is unknown"
        )
    if report.apple.rosetta:
        notes.append(
            "this Python runs under Rosetta (x86_64): it gets Intel-Mac wheels, the last "
            "being torch 2.2 without MPS; use an arm64 Python"
        )
    amd_ready = report.amd.kfd_present or report.amd.source == "flags"
    if report.amd.gpus and not amd_ready:
        notes.append("AMD GPU present but /dev/kfd is missing: the amdgpu driver is not loaded")
    libc = report.cpu.libc
    return Host(
        os=report.system.os,
        platform=_platform(report),
        python=report.python.minor,
        free_threaded=report.python.free_threaded,
        glibc=_parse(report.cpu.libc_version) if libc == "glibc" else None,
        musl=libc == "musl",
        nvidia=nvidia,
        amd_gfx=tuple(sorted({g.gfx for g in report.amd.gpus})),
        amd_ready=amd_ready,
        rocm=report.amd.rocm_version,
        intel=bool(report.intel.gpus),
        apple_silicon=bool(report.apple.apple_silicon),
        macos=_parse(report.apple.macos_version),
        notes=tuple(notes),
    )


# --- judging one candidate ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str
    unlock: str | None = None
    soft: bool = False  # an explicit --backend turns a failed soft check into a warning
    flags: tuple[Flag, ...] = ()
    request: bool = False
    missing: bool = False  # failed because the index does not hold the build


def show_driver(version: Dotted) -> str:
    """(580, 65, 6) -> "580.65.06" (NVIDIA pads the parts after the first)."""
    return ".".join([str(version[0]), *(f"{p:02d}" for p in version[1:])])


def _availability_check(
    host: Host, release: Release, build: Build, url: str, listing: IndexListing
) -> Check:
    """Whether the index at `url` holds this build for the host's platform and Python."""
    platform = host.platform or ""
    backend = listed_backend(build.backend, platform)
    label = f"Python {host.python_label}"
    unlock = f"an index that has torch {release.torch} {build.backend}"
    if not listing.found:
        return Check(
            False, f"{url} has no torch wheels{listing.age_text}", unlock=unlock, missing=True
        )
    rows = listing.rows(platform, backend)
    same = [r for r in rows if r.torch == release.torch]
    serving = [r for r in same if r.serves(host.python, host.free_threaded)]
    if serving:
        newest = max((r.newest for r in serving), key=version_key)
        return Check(True, f"torch {newest} is on {url}{listing.age_text}")
    if same:
        kind = "free-threaded Python" if host.free_threaded else "Python"
        pythons = sorted(
            {p for r in same for p in (r.python_ft if host.free_threaded else r.python)},
            key=dotted,
        )
        if pythons:
            reason = f"{url} has torch {release.torch} for {kind} {', '.join(pythons)}, not {label}"
        elif host.free_threaded:
            reason = f"{url} has no free-threaded torch {release.torch} wheel (for {label})"
        else:
            reason = f"{url} has no torch {release.torch} wheel for {label}"
        return Check(False, reason, unlock=unlock, missing=True)
    best = listing.newest_for(platform, backend, host.python, host.free_threaded)
    if best is not None:
        reason = f"torch {release.torch} is not on {url}; {best.newest} is"
    else:
        reason = f"{url} has no torch wheel for {label} on {platform}"
    return Check(False, reason + listing.age_text, unlock=unlock, missing=True)


def _platform_checks(host: Host, release: Release) -> list[Check]:
    checks = []
    py_list = release.python_ft if host.free_threaded else release.python
    label = f"Python {host.python}{'t' if host.free_threaded else ''}"
    if host.python in py_list:
        checks.append(Check(True, f"{label} wheels exist"))
    else:
        span = f"{py_list[0]}-{py_list[-1]}" if py_list else "none"
        checks.append(
            Check(
                False,
                f"no torch {release.torch} wheels for {label} (has {span})",
                unlock=f"Python {span}" if py_list else None,
            )
        )
    if host.musl:
        checks.append(Check(False, "no torch wheels for musl libc (manylinux only)"))
    elif host.glibc is not None and host.platform and host.platform.startswith("linux"):
        need = dotted(release.glibc)
        if host.glibc < need:
            checks.append(
                Check(
                    False,
                    f"torch {release.torch} needs glibc >= {release.glibc}, "
                    f"host has {show(host.glibc)}",
                    unlock=f"glibc >= {release.glibc} for torch {release.torch}",
                )
            )
    return checks


def _driver_check(host: Host, build: Build, catalog: Catalog) -> tuple[Check, bool]:
    """(check, native): whether the driver runs this CUDA build natively or by compatibility."""
    nv, need = host.nvidia, cuda_of(build.backend)
    floor = catalog.driver_floor(need)
    floor_text = show_driver(floor.for_os(host.os)[0]) if floor else None
    have = f"driver {nv.driver_text or '?'} (CUDA {show(nv.cuda) if nv.cuda else '?'})"
    unlock = f"driver >= {floor_text} for {build.backend}" if floor_text else None
    native = (
        (nv.cuda is not None and nv.cuda >= need)
        if (nv.cuda_measured or floor is None)
        else (nv.driver is not None and floor is not None and nv.driver >= floor.for_os(host.os)[0])
    )
    if native:
        return Check(True, f"{have} runs CUDA {show(need)} natively"), True
    compat = catalog.compat_floor(need[0])
    if compat is not None and (
        (nv.driver is not None and nv.driver >= compat.for_os(host.os))
        or (nv.driver is None and nv.cuda is not None and nv.cuda[0] == need[0])
    ):
        return Check(
            True,
            f"{have} runs CUDA {show(need)} by minor-version compatibility "
            f"(CUDA {need[0]}.x needs >= {show_driver(compat.for_os(host.os))})",
            flags=(Flag.MINOR_VERSION_COMPAT,),
        ), False
    if floor is None:
        reason = f"CUDA {show(need)} has no driver floor in the catalog; {have} may not run it"
        return Check(False, reason, soft=True), False
    return Check(
        False,
        f"{have} is older than {floor_text}, which CUDA {show(need)} needs",
        unlock=unlock,
        soft=True,
    ), False


def _covers(build: Build, cc: Dotted) -> str | None:
    """ "sass", "ptx" or None: how the build carries code for a GPU of this capability."""
    for sass in build.sass:
        major, minor = dotted(sass)
        if major == cc[0] and minor <= cc[1]:
            return "sass"
    if any(dotted(p) <= cc for p in build.ptx):
        return "ptx"
    return None


def _coverage_checks(host: Host, build: Build, native: bool, catalog: Catalog) -> list[Check]:
    checks = []
    if not host.nvidia.gpus:
        checks.append(
            Check(
                True,
                "no GPU compute capability known: coverage not checked",
                flags=(Flag.CC_UNKNOWN,),
            )
        )
    code = " ".join(build.sass) or "none"
    for gpu in host.nvidia.gpus:
        if gpu.cc is None:
            checks.append(
                Check(
                    True,
                    f"{gpu.label}: compute capability unknown, not checked",
                    flags=(Flag.CC_UNKNOWN,),
                )
            )
            continue
        how = _covers(build, gpu.cc)
        if how == "sass":
            checks.append(Check(True, f"{gpu.label} has SASS"))
        elif how == "ptx" and gpu.sass_in:
            checks.append(
                Check(
                    False,
                    f"{gpu.label} only through PTX JIT here, while "
                    f"{', '.join(gpu.sass_in)} carry its SASS",
                    soft=True,
                )
            )
        elif how == "ptx" and native:
            checks.append(
                Check(
                    True,
                    f"{gpu.label} only through PTX JIT (slow first use)",
                    flags=(Flag.PTX_ONLY,),
                )
            )
        elif how == "ptx":
            floor = catalog.driver_floor(cuda_of(build.backend))
            need = show_driver(floor.for_os(host.os)[0]) if floor else "a newer driver"
            checks.append(
                Check(
                    False,
                    f"{gpu.label} only through PTX JIT, which needs the "
                    f"driver to run CUDA {show(cuda_of(build.backend))} natively",
                    unlock=f"driver >= {need} for {build.backend}",
                    soft=True,
                )
            )
        else:
            ptx = f"; PTX {' '.join(build.ptx)}" if build.ptx else ""
            checks.append(
                Check(
                    False,
                    f"{build.backend} has no code for {gpu.label} (SASS {code}{ptx})",
                    soft=True,
                )
            )
    return checks


def _device_checks(host: Host, release: Release, build: Build, catalog: Catalog) -> list[Check]:
    kind = build.kind
    if kind is Kind.CUDA:
        if host.nvidia.blocked or not host.nvidia.present:
            return [
                Check(
                    False,
                    host.nvidia.blocked or "no NVIDIA GPU",
                    soft=True,
                    unlock=host.nvidia.unblock,
                )
            ]
        driver, native = _driver_check(host, build, catalog)
        if not driver.ok:
            return [driver]
        return [driver, *_coverage_checks(host, build, native, catalog)]
    if kind is Kind.ROCM:
        if not host.amd_gfx:
            return [Check(False, "no AMD GPU", soft=True)]
        checks = [
            Check(
                host.amd_ready,
                "amdgpu driver loaded (/dev/kfd)"
                if host.amd_ready
                else "the amdgpu driver is not loaded (/dev/kfd missing)",
                soft=True,
            )
        ]
        missing = [g for g in host.amd_gfx if g not in build.gfx]
        checks.append(
            Check(
                not missing,
                f"{build.backend} has code for {', '.join(host.amd_gfx)}"
                if not missing
                else f"{build.backend} has no code for {', '.join(missing)}",
                soft=True,
            )
        )
        return checks
    if kind is Kind.XPU:
        return [Check(host.intel, "Intel GPU present" if host.intel else "no Intel GPU", soft=True)]
    if kind is Kind.MPS:
        need = dotted(release.mps_macos)
        if not host.apple_silicon:
            return [Check(False, "MPS needs Apple silicon", soft=True)]
        ok = host.macos is not None and host.macos >= need
        return [
            Check(
                ok,
                f"MPS on macOS {show(host.macos) if host.macos else '?'} "
                f"(torch {release.torch} needs >= {release.mps_macos})",
                unlock=None if ok else f"macOS >= {release.mps_macos} for MPS",
                soft=True,
            )
        ]
    return [Check(True, "runs on any CPU")]


def _judge(
    host: Host,
    release: Release,
    build: Build,
    *,
    wants: Wants,
    catalog: Catalog,
    forced: bool,
    url: str | None = None,
    listing: IndexListing | None = None,
) -> Candidate:
    allowed = wants.allows(release)
    checks = [
        Check(
            allowed,
            "allowed by " + (wants.text() or "the request")
            if allowed
            else f"torch {release.torch} is excluded by {wants.text()}",
            request=True,
        )
    ]
    platform = _platform_checks(host, release)
    checks += platform
    if url is not None and listing is not None and listing.known:
        checks.append(_availability_check(host, release, build, url, listing))
    checks += _device_checks(host, release, build, catalog)
    flags = [f for c in checks if c.ok for f in c.flags]
    if build.inferred or "python" in release.inferred or release.origin != "shipped":
        flags.append(Flag.INFERRED)
    if forced:
        flags.append(Flag.FORCED)
    failed = [c for c in checks if not c.ok and not (forced and c.soft)]
    host_ok = all(c.ok or c.request or (forced and c.soft) for c in checks)
    missing = next((c.reason for c in failed if c.missing), None)
    if failed:
        reasons = tuple(c.reason for c in failed)
    else:
        device = tuple(c.reason for c in checks[1 + len(platform) :] if c.ok)
        reasons = device + tuple(c.reason for c in platform if c.ok)
        reasons += tuple(f"ignored for --backend: {c.reason}" for c in checks if not c.ok)
        if build.inferred:
            reasons += (f"{build.backend} {build.inferred}",)
    unlock = tuple(c.unlock for c in failed if c.unlock) if len(failed) == 1 else ()
    mvc = Flag.MINOR_VERSION_COMPAT in flags
    tier = 2 if build.kind is Kind.CPU else (1 if Flag.PTX_ONLY in flags else 0)
    rank = (
        tier,
        VENDOR_RANK[build.kind],
        tuple(-p for p in release.key),
        mvc,
        tuple(-p for p in backend_order(build.backend)),
    )
    return Candidate(
        release.torch,
        build.backend,
        not failed,
        reasons,
        tuple(dict.fromkeys(flags)),
        unlock,
        host_ok,
        allowed,
        rank,
        index_url=url,
        unavailable=missing,
    )


# --- the whole selection ------------------------------------------------------------------


def _relevant(host: Host, build: Build) -> bool:
    return {
        Kind.CPU: True,
        Kind.CUDA: host.nvidia.present,
        Kind.ROCM: bool(host.amd_gfx),
        Kind.XPU: host.intel,
        Kind.MPS: True,
    }[build.kind]


def _builds(release: Release, platform: str) -> tuple[Build, ...]:
    builds = release.builds(platform)
    if platform == "macos-arm64" and not any(b.kind is Kind.CPU for b in builds):
        builds = (*builds, Build("cpu", Kind.CPU))  # the same PyPI wheel, without MPS
    return builds


def index_url(backend: str, channel: str, request: Request, platform: str | None) -> str:
    return family_index_url(
        backend,
        channel,
        macos=(platform or "").startswith("macos"),
        torch_index=request.torch_index_url,
        default_index=request.default_index_url,
    )


def _forced_backend(request: Request) -> str | None:
    if request.backend in (None, "", "auto"):
        return None
    assert request.backend is not None
    if backend_kind(request.backend) is None:
        raise InvalidRequest(
            f"unknown backend {request.backend!r} (use auto, cpu, cuNNN, rocmX.Y, xpu or mps)"
        )
    return request.backend


def select(
    host: HostReport,
    request: Request,
    catalog: Catalog,
    availability: Availability | None = None,
) -> Selection:
    """Rank every (release, backend) the host could use and pick the best; never raises for
    an unsatisfiable host (ok=False with unlock hints), only for an invalid request.

    `availability` is what the configured index holds (each backend's torch page, read by the
    agent): a build its index lacks is skipped with the reason, and the next-ranked build the
    index holds wins. On test and nightly, the release is the one the index has."""
    wants = parse_wants(request.requirements, request.channel)
    forced = _forced_backend(request)
    if wants.backend is not None:
        if forced is not None and forced != wants.backend:
            raise InvalidRequest(
                f"--backend {forced} contradicts the requirements, which name +{wants.backend}"
            )
        forced = wants.backend
    view = _host(host, catalog)
    releases = catalog.releases_for(request.channel)
    known = availability or Availability()
    candidates: list[Candidate] = []
    if view.platform is not None:
        for release in releases:
            for build in _builds(release, view.platform):
                if build.backend == forced or (forced is None and _relevant(view, build)):
                    url = index_url(build.backend, request.channel, request, view.platform)
                    listing = known.get(url)
                    here = release
                    if request.channel != "stable" and listing is not None:
                        here = _as_listed(release, build, view, listing)
                    candidates.append(
                        _judge(
                            view,
                            here,
                            build,
                            wants=wants,
                            catalog=catalog,
                            forced=forced is not None,
                            url=url,
                            listing=listing,
                        )
                    )
    ranked = sorted(candidates, key=lambda c: (not c.ok, c.rank))
    return _decide(view, request, tuple(ranked), wants=wants, forced=forced)


def _as_listed(release: Release, build: Build, host: Host, listing: IndexListing) -> Release:
    """A test/nightly release as the index has it: its newest torch for this build, with the
    Pythons it publishes (the catalog only guesses what the next release brings)."""
    rows = listing.rows(host.platform or "", listed_backend(build.backend, host.platform or ""))
    if not rows or not listing.known:
        return release
    newest = max(rows, key=lambda r: dotted(r.torch))
    same = [r for r in rows if r.torch == newest.torch]
    return replace(
        release,
        torch=newest.torch,
        python=tuple(sorted({p for r in same for p in r.python}, key=dotted)),
        python_ft=tuple(sorted({p for r in same for p in r.python_ft}, key=dotted)),
    )


def pages_to_read(
    selection: Selection, availability: Availability | None, *, limit: int = 4
) -> list[str]:
    """The index URLs to read next: those of the best-ranked usable candidates whose index
    has not been read, up to `limit` distinct URLs, best first (empty: the choice stands)."""
    known = availability or Availability()
    usable = [c for c in selection.candidates if c.ok and c.index_url is not None]
    if not usable or known.get(usable[0].index_url or "") is not None:
        return []  # the best usable build's index was read: nothing below it can win
    out: list[str] = []
    for candidate in usable:
        url = (candidate.index_url or "").rstrip("/")
        if known.get(url) is None and url not in out:
            out.append(url)
            if len(out) >= limit:
                break
    return out


def _decide(
    host: Host, request: Request, ranked: tuple[Candidate, ...], *, wants: Wants, forced: str | None
) -> Selection:
    ok = [c for c in ranked if c.ok]
    accelerated_anywhere = [c for c in ranked if c.accelerated and c.host_ok]
    chosen = ok[0] if ok else None
    reasons: list[str] = []
    if forced is None and chosen is not None and not chosen.accelerated and accelerated_anywhere:
        reasons.append(f"{wants.text()} excludes every accelerated build that runs here")
        chosen = None
    base = Selection(
        ok=False,
        backend=None,
        torch=None,
        index_url=None,
        channel=request.channel,
        platform=host.platform,
        python=host.python_label,
        candidates=ranked,
    )
    if chosen is None:
        if host.platform is None:
            reasons.append("no torch wheels exist for this OS and architecture")
        elif forced is not None and not ranked:
            reasons.append(f"no {request.channel} torch release has {forced} for {host.platform}")
        return _failed(
            base, ranked, accelerated_anywhere, reasons=reasons, host=host, forced=forced
        )
    warnings = list(host.notes)
    warnings += _warnings(chosen, host, forced, ranked)
    skipped = [
        c.unavailable
        for c in ranked
        if c.unavailable is not None and c.request_ok and c.rank < chosen.rank
    ]
    return Selection(
        ok=True,
        backend=chosen.backend,
        torch=chosen.torch,
        index_url=index_url(chosen.backend, request.channel, request, host.platform),
        channel=request.channel,
        platform=host.platform,
        python=host.python_label,
        candidates=ranked,
        reasons=chosen.reasons,
        warnings=tuple(dict.fromkeys(warnings)),
        flags=chosen.flags,
        skipped=tuple(dict.fromkeys(skipped)),
    )


def _failed(
    base: Selection,
    ranked: Sequence[Candidate],
    excluded: Sequence[Candidate],
    *,
    reasons: list[str],
    host: Host,
    forced: str | None,
) -> Selection:
    unlock = [u for c in ranked if c.request_ok for u in c.unlock]
    python = [u for u in unlock if u.startswith("Python ")][:1]
    unlock = [u for u in unlock if not u.startswith("Python ") or u in python]
    if forced is not None and not ranked:
        unlock.append("`torchenv catalog refresh` if the index has it")
    if excluded:
        best = min(excluded, key=lambda c: c.rank)
        unlock.append(f"allow torch {best.torch} ({best.backend} runs here)")
    if not reasons:
        reasons.append("no torch build satisfies the request on this host")
    top = [c for c in ranked if c.request_ok and not c.ok][:1] or list(ranked[:1])
    reasons += [r for c in top if not c.ok for r in c.reasons]
    unlock.sort(key=_unlock_order)
    return replace(
        base,
        reasons=tuple(dict.fromkeys(reasons)),
        unlock=tuple(dict.fromkeys(unlock))[:4],
        warnings=host.notes,
    )


def _unlock_order(hint: str) -> tuple[int, Dotted]:
    """Driver upgrades first, the smallest first; other hints keep their order."""
    match = re.match(r"driver >= ([\d.]+) ", hint)
    return (0, dotted(match[1])) if match else (1, ())


def _warnings(
    chosen: Candidate, host: Host, forced: str | None, ranked: Sequence[Candidate] = ()
) -> list[str]:
    out = []
    missing = [c for c in ranked if c.accelerated and c.unavailable and c.request_ok]
    if Flag.MINOR_VERSION_COMPAT in chosen.flags:
        out.append(
            f"{chosen.backend} runs by CUDA minor-version compatibility: kernels run, but "
            "PTX JIT and some newer CUDA features need a newer driver"
        )
    if Flag.PTX_ONLY in chosen.flags:
        out.append(
            f"no torch build ships SASS for every GPU: {chosen.backend} runs through PTX "
            "JIT, compiling kernels on first use (slow; cached afterwards)"
        )
    if Flag.CC_UNKNOWN in chosen.flags:
        out.append(
            "GPU compute capability unknown: chose by driver only; pass --gpu MAJOR.MINOR "
            "(or give the probe NVML) to check the build has code for the GPU"
        )
    if Flag.INFERRED in chosen.flags:
        out.append(
            f"torch {chosen.torch} {chosen.backend} rests on inferred catalog rows; "
            "`torchenv verify` will prove it"
        )
    if forced is not None:
        out += [
            r.removeprefix("ignored for --backend: ")
            for r in chosen.reasons
            if r.startswith("ignored for --backend: ")
        ]
    elif not chosen.accelerated and missing:
        out.append(
            "the index holds no accelerated build this host runs ("
            + "; ".join(dict.fromkeys(c.unavailable or "" for c in missing[:3]))
            + "); using CPU"
        )
    elif not chosen.accelerated and host.nvidia.present and not host.nvidia.blocked:
        out.append("no CUDA build runs on this host: " + _gpu_story(host))
    elif not chosen.accelerated and host.amd_gfx:
        out.append(f"no ROCm build has code for {', '.join(host.amd_gfx)}; using CPU")
    return out


def _gpu_story(host: Host) -> str:
    """Which backends carry SASS for each GPU on its own (mixed GPUs explain themselves here)."""
    parts = [
        f"{gpu.label} needs {', '.join(gpu.sass_in) or 'a build no release has'}"
        for gpu in host.nvidia.gpus
        if gpu.cc is not None
    ]
    return "; ".join(parts) or "see the candidates"
