"""pytest fixtures: `indexsim_site` (built once per session) and `indexsim` (a running server).

Use in a test module with `from indexsim.fixtures import indexsim, indexsim_site  # noqa: F401`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .catalog import default_catalog
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
