"""Whether one build of one release runs on the host: checks with reasons and unlocks."""

from __future__ import annotations

from dataclasses import dataclass

from torchenv.backends.availability import IndexListing, listed_backend, version_key
from torchenv.backends.catalog import Build, Catalog, Release
from torchenv.backends.select.host import Host, covers
from torchenv.backends.select.model import Flag
from torchenv.backends.vocabulary import Dotted, Kind, cuda_of, dotted, show


@dataclass(frozen=True)
class Check:
    """One check of a build against the host or request: passed or not, why, what unlocks it."""

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


def availability_check(
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


def platform_checks(host: Host, release: Release) -> list[Check]:
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
        how = covers(build, gpu.cc)
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


def device_checks(host: Host, release: Release, build: Build, catalog: Catalog) -> list[Check]:
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
