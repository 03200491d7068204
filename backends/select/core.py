"""select(): every (release, backend) the host could use, judged and ranked, and the pick."""

from __future__ import annotations

from dataclasses import replace

from torchenv.backends.availability import Availability, IndexListing, listed_backend
from torchenv.backends.catalog import Build, Catalog, Release
from torchenv.backends.select.explain import decide
from torchenv.backends.select.host import Host, host_view
from torchenv.backends.select.model import (
    Candidate,
    InvalidRequest,
    Request,
    Selection,
    index_url,
)
from torchenv.backends.select.rank import judge
from torchenv.backends.select.wants import parse_wants
from torchenv.backends.vocabulary import Kind, backend_kind, dotted
from torchenv.probes.report import HostReport


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
    view = host_view(host, catalog)
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
                        judge(
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
    return decide(view, request, tuple(ranked), wants=wants, forced=forced)


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
