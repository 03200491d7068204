"""A few hand-made wheels for focused tests of metadata reading (see fixtures.focus_site)."""

from __future__ import annotations

import zipfile

from .catalog import Catalog, Hosted
from .wheels import WheelSpec

FOCUS_PADDING = 16 * 1024 * 1024
MANY_FILES = 3000
FOCUS_WHEELS = (
    WheelSpec(
        "demo",
        "1.0",
        "py3-none-any",
        requires_dist=("attrs>=22", 'tomli; python_version < "3.11"'),
        requires_python=">=3.9",
    ),
    WheelSpec(
        "demo-stored",
        "1.0",
        "py3-none-any",
        requires_dist=("attrs",),
        metadata_compression=zipfile.ZIP_STORED,
    ),
    WheelSpec("demo-zip64", "1.0", "py3-none-any", requires_dist=("attrs",), force_zip64=True),
    WheelSpec(  # a central directory far larger than the first range read
        "demo-many",
        "1.0",
        "py3-none-any",
        requires_dist=("attrs",),
        files={f"demo_many/module_{i:04d}.py": f"X = {i}\n" for i in range(MANY_FILES)},
    ),
    WheelSpec(
        "bigtorch",
        "2.7.0+cu126",
        "cp311-cp311-manylinux_2_28_x86_64",
        requires_dist=("nvidia-cublas-cu12==12.6.4.1",),
        padding=FOCUS_PADDING,
    ),
)


def focus_catalog() -> Catalog:
    files = []
    for spec in FOCUS_WHEELS:
        files.append(Hosted("pypi", "", "", spec, pep658=True))
        files.append(Hosted("pytorch", "", "cu126", spec, pep658=False))
    return Catalog(tuple(files))
