"""A loopback PyTorch-style and PyPI-style package index built from real test wheels."""

from __future__ import annotations

from .catalog import Catalog, Hosted, default_catalog, small_catalog
from .server import Fault, IndexSim, Knobs, RequestRecord, Site, SiteFile, build_site
from .wheels import WheelSpec, build_wheel, metadata_text

__all__ = [
    "Catalog",
    "Fault",
    "Hosted",
    "IndexSim",
    "Knobs",
    "RequestRecord",
    "Site",
    "SiteFile",
    "WheelSpec",
    "build_site",
    "build_wheel",
    "default_catalog",
    "metadata_text",
    "small_catalog",
]
