"""The shipped catalog read from data/*.json, merged with a `catalog refresh` result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchenv.backends.catalog.facts import Facts, load_facts, read_data
from torchenv.backends.catalog.merge import merge_live
from torchenv.backends.catalog.model import (
    PLATFORMS,
    Build,
    Catalog,
    CatalogError,
    Channel,
    CompatFloor,
    DriverFloor,
    Release,
)
from torchenv.backends.vocabulary import Kind, backend_kind, dotted

INFERRED_SHIPPED = "inferred (not read directly; the live index may correct it)"


def _in_range(torch: str, bounds: list[str | None]) -> bool:
    low, high = bounds
    key = dotted(torch)
    return (low is None or key >= dotted(low)) and (high is None or key <= dotted(high))


def _make_build(
    facts: Facts, torch: str, platform: str, backend: str, inferred: str | None
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


def _make_release(facts: Facts, row: Mapping[str, Any]) -> Release:
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


def load_catalog(live: Mapping[str, Any] | None = None) -> Catalog:
    """The shipped catalog, merged with a `catalog refresh` result when one is given."""
    cuda, rocm, rel = read_data("cuda.json"), read_data("rocm.json"), read_data("releases.json")
    facts = load_facts()
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
