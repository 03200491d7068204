"""The torch-backend catalog: shipped facts (data/*.json) merged with what the live index showed."""

from __future__ import annotations

from torchenv.backends.catalog.facts import DATA_DIR
from torchenv.backends.catalog.load import load_catalog
from torchenv.backends.catalog.merge import INFERRED_LIVE, LIVE_SCHEMA, add_listed
from torchenv.backends.catalog.model import Build, Catalog, CatalogError, Release

# Their home is backends.vocabulary; tests and benchmarks read them here too.
from torchenv.backends.vocabulary import Kind, cuda_of, dotted

__all__ = [
    "DATA_DIR",
    "INFERRED_LIVE",
    "LIVE_SCHEMA",
    "Build",
    "Catalog",
    "CatalogError",
    "Kind",
    "Release",
    "add_listed",
    "cuda_of",
    "dotted",
    "load_catalog",
]
