"""`torchenv catalog refresh`: learn from the live PyTorch index which torch builds exist."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.base.errors import ConfigError

if TYPE_CHECKING:
    from torchenv.agent.index.client import IndexClient
    from torchenv.agent.index.model import Artifact
    from torchenv.backends.catalog import Catalog

LIVE_FILE = "catalog-live.json"


@dataclass(frozen=True)
class WheelFacts:
    """What one torch wheel's file name says."""

    torch: str  # "2.14"
    version: str  # "2.14.1+cu130"
    backend: str  # the local label, or the backend of the page for unlabelled wheels
    platform: str  # a catalog platform key
    python: str  # "3.12"
    free_threaded: bool


def platform_of(tag: str) -> str | None:
    """A wheel platform tag -> a catalog platform key (None for anything torchenv does not use)."""
    if tag == "win_amd64":
        return "windows-x86_64"
    if tag.startswith("macosx_"):
        return {"arm64": "macos-arm64", "x86_64": "macos-x86_64"}.get(tag.rsplit("_", 1)[-1])
    if tag.startswith(("manylinux", "linux_")):
        for arch in ("x86_64", "aarch64"):
            if tag.endswith("_" + arch):
                return f"linux-{arch}"
    return None


def wheel_facts(artifact: Artifact, page_backend: str) -> list[WheelFacts]:
    """The builds one torch wheel stands for ([] for sdists and foreign files)."""
    from torchenv.backends.availability import listed_backend

    version = artifact.version
    if not artifact.is_wheel or version is None or len(version.release) < 2:
        return []
    local = version.local or ""
    out = []
    for tag in artifact.tags:
        platform = platform_of(tag.platform)
        if platform is None or not tag.interpreter.startswith("cp"):
            continue
        backend = listed_backend(local or page_backend, platform)
        digits = tag.interpreter[2:]
        python = f"{digits[0]}.{digits[1:]}"
        out.append(
            WheelFacts(
                torch=f"{version.release[0]}.{version.release[1]}",
                version=str(version),
                backend=backend,
                platform=platform,
                python=python,
                free_threaded=tag.abi.endswith("t"),
            )
        )
    return out


def summarize(facts: Iterable[WheelFacts]) -> list[dict[str, Any]]:
    """Group wheel facts into the live catalog rows the loader merges."""
    rows: dict[tuple[str, str, str], dict[str, set[str]]] = {}
    for f in facts:
        row = rows.setdefault(
            (f.torch, f.platform, f.backend),
            {"python": set(), "python_ft": set(), "versions": set()},
        )
        row["python_ft" if f.free_threaded else "python"].add(f.python)
        row["versions"].add(f.version)
    return [
        {
            "torch": torch,
            "platform": platform,
            "backend": backend,
            **{k: sorted(v) for k, v in row.items()},
        }
        for (torch, platform, backend), row in sorted(rows.items())
    ]


def backends_to_ask(catalog: Catalog) -> list[str]:
    """Every backend the shipped catalog knows, and the next CUDA and ROCm names after them."""
    from torchenv.backends.vocabulary import Kind, backend_kind, backend_order

    known = {b.backend for r in catalog.releases for _, builds in r.platforms for b in builds}
    known.discard("mps")
    cuda = max((b for b in known if backend_kind(b) is Kind.CUDA), key=backend_order)
    rocm = max((b for b in known if backend_kind(b) is Kind.ROCM), key=backend_order)
    major, minor = backend_order(cuda)[:2]
    r_major, r_minor = backend_order(rocm)[:2]
    successors = [
        f"cu{major}{minor + 1}",
        f"cu{major}{minor + 2}",
        f"cu{major + 1}0",
        f"rocm{r_major}.{r_minor + 1}",
        f"rocm{r_major + 1}.0",
    ]
    return sorted(known | set(successors), key=lambda b: (b[:2], backend_order(b)))


def refresh(client: IndexClient, torch_index_url: str, backends: Sequence[str]) -> dict[str, Any]:
    """Read /<backend>/torch/ for each backend; a backend the index lacks (404) is skipped."""
    from torchenv.backends import vocabulary
    from torchenv.backends.catalog import LIVE_SCHEMA

    base = torch_index_url.rstrip("/")
    pages = client.map(
        lambda b: (b, client.project_page(vocabulary.torch_index_url(base, "stable", b), "torch")),
        list(backends),
    )
    facts = [f for backend, page in pages for a in page for f in wheel_facts(a, backend)]
    return {
        "schema": LIVE_SCHEMA,
        "index": base,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backends": sorted({b for b, page in pages if page}),
        "wheels": summarize(facts),
    }


def newest_on_index(live: Mapping[str, Any]) -> str | None:
    """The newest torch version a refresh found on the index (not the catalog's newest)."""
    from torchenv.backends.availability import version_key

    versions = [v for row in live.get("wheels", ()) for v in row.get("versions", ())]
    return max(versions, key=version_key) if versions else None


def newest_text(live: Mapping[str, Any]) -> str:
    """ "the index's newest torch is 2.14.1 (cpu 2.13.0+cpu, cu130 2.14.1)", or that it has none."""
    from torchenv.backends.availability import version_key

    newest = newest_on_index(live)
    if newest is None:
        return f"{live.get('index')} holds no torch wheel torchenv can use"
    per_backend: dict[str, str] = {}
    for row in live.get("wheels", ()):
        for version in row.get("versions", ()):
            best = per_backend.get(row["backend"])
            if best is None or version_key(version) > version_key(best):
                per_backend[row["backend"]] = version
    listed = ", ".join(f"{b} {v}" for b, v in sorted(per_backend.items()))
    return f"the index's newest torch is {newest} ({listed})"


def live_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / LIVE_FILE


def save(live: Mapping[str, Any], cache_dir: str | Path) -> Path:
    """Write the refresh result atomically beside the other caches."""
    from torchenv.agent.base.fsutil import write_atomic

    path = live_path(cache_dir)
    try:
        write_atomic(path, json.dumps(live, indent=1, sort_keys=True).encode())
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="set cache-dir to a writable directory",
        ) from exc
    return path


def load(cache_dir: str | Path | None) -> Catalog:
    """The shipped catalog, merged with the last refresh when the cache holds one."""
    from torchenv.backends.catalog import load_catalog

    live = None
    path = live_path(cache_dir) if cache_dir else None
    if path is not None and path.is_file():
        from torchenv.agent.base.fsutil import read_bounded
        from torchenv.agent.base.limits import MAX_CATALOG

        try:
            live = json.loads(read_bounded(path, MAX_CATALOG, "refreshed catalog"))
        except (OSError, ValueError, RecursionError) as exc:  # TooLarge is a ValueError
            raise ConfigError(
                f"cannot read the refreshed catalog {path}: {exc}",
                hint="run `torchenv catalog refresh` again, or delete the file",
            ) from exc
    try:
        return load_catalog(live)
    except (ValueError, KeyError, TypeError) as exc:  # CatalogError, or a malformed row
        raise ConfigError(
            f"the refreshed catalog {path} is unusable: {exc}",
            hint="run `torchenv catalog refresh` again, or delete the file",
        ) from exc
