"""pytest fixtures over the simulator, registered for every test by tests/conftest.py.

- `indexsim_site` / `indexsim`: the default catalog (both indexes, every quirk), unpadded,
  built once per session; `indexsim` is a fresh server (fresh knobs, counters) per test.
- `focus_site` / `focus_sim`: a few hand-made wheels (stored and deflated METADATA, zip64,
  one padded to FOCUS_PADDING bytes), each on PyPI (with PEP 658 files) and on the
  PyTorch index's cu126 directory (without them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .catalog import default_catalog
from .focus import focus_catalog
from .server import IndexSim, Knobs, Site, build_site


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
