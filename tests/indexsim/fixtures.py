"""pytest fixtures over the simulator; import them into a test module to use them.

`pytest_plugins = ("indexsim.fixtures",)` (or import the fixtures by name).

- `indexsim_site` / `indexsim`: the default catalog (both indexes, every quirk), unpadded,
  built once per session; `indexsim` is a fresh server (fresh knobs, counters) per test.
- `focus_site` / `focus_sim`: a few hand-made wheels (stored and deflated METADATA, zip64,
  one padded to FOCUS_PADDING bytes), each on PyPI (with PEP 658 files) and on the
  PyTorch index's cu126 directory (without them).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

import pytest

from .catalog import Catalog, Hosted, default_catalog
from .server import IndexSim, Knobs, Site, build_site
from .wheels import WheelSpec

FOCUS_PADDING = 16 * 1024 * 1024
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


@pytest.fixture(scope="session")
def indexsim_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Every wheel of the default catalog, unpadded, built once for the whole session."""
    return build_site(default_catalog(), tmp_path_factory.mktemp("indexsim-wheels"))


@pytest.fixture
def indexsim(indexsim_site: Site) -> Iterator[IndexSim]:
    """A fresh server (fresh knobs and counters) over the session's wheels."""
    with IndexSim(indexsim_site, Knobs()) as sim:
        yield sim


@pytest.fixture(scope="session")
def focus_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return build_site(focus_catalog(), tmp_path_factory.mktemp("indexsim-focus"))


@pytest.fixture
def focus_sim(focus_site: Site) -> Iterator[IndexSim]:
    with IndexSim(focus_site, Knobs()) as sim:
        yield sim
