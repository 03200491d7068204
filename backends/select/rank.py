"""One candidate judged: its checks gathered into a verdict, reasons, flags and a rank."""

from __future__ import annotations

from torchenv.backends.availability import IndexListing
from torchenv.backends.catalog import Build, Catalog, Release
from torchenv.backends.select.checks import (
    Check,
    availability_check,
    device_checks,
    platform_checks,
)
from torchenv.backends.select.host import Host
from torchenv.backends.select.model import Candidate, Flag
from torchenv.backends.select.wants import Wants
from torchenv.backends.vocabulary import Kind, backend_order

VENDOR_RANK = {Kind.CUDA: 0, Kind.ROCM: 1, Kind.XPU: 2, Kind.MPS: 0, Kind.CPU: 9}


def judge(
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
    platform = platform_checks(host, release)
    checks += platform
    if url is not None and listing is not None and listing.known:
        checks.append(availability_check(host, release, build, url, listing))
    checks += device_checks(host, release, build, catalog)
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
