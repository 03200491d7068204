"""What an index lists and the shipped facts lack, added conservatively and flagged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from torchenv.backends.catalog.facts import Facts, load_facts
from torchenv.backends.catalog.model import (
    PLATFORMS,
    Build,
    Catalog,
    CatalogError,
    Release,
    next_family,
)
from torchenv.backends.vocabulary import Kind, backend_kind, cuda_of, dotted, rocm_of

LIVE_SCHEMA = 1


INFERRED_LIVE = "inferred from the live index"


def merge_live(catalog: Catalog, facts: Facts, live: Mapping[str, Any]) -> Catalog:
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
    return _add_rows(catalog, load_facts(), list(rows))


def _add_rows(catalog: Catalog, facts: Facts, rows: Iterable[Mapping[str, Any]]) -> Catalog:
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
        family=next_family(newest.family, torch),
        platforms=(),
        inferred=("glibc", "mps_macos", "pypi_default", "family"),
        source=INFERRED_LIVE,
        origin="live",
    )


def _add_builds(
    catalog: Catalog, facts: Facts, release: Release, platforms: Mapping[str, Iterable[str]]
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
    catalog: Catalog, facts: Facts, torch: str, platform: str, backend: str
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
