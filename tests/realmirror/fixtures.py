"""pytest fixtures over the real-wheel mirror, registered for every test by tests/conftest.py.

- `real_mirror_files`: the layout (session), or a skip saying why the wheels are absent;
- `real_mirror`: a server over it, one per module (counters reset by the tests that count).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .mirror import MirrorFiles, RealMirror, find_mirror_files


@pytest.fixture(scope="session")
def real_mirror_files(tmp_path_factory: pytest.TempPathFactory) -> MirrorFiles:
    found = find_mirror_files(tmp_path_factory.mktemp("realmirror"))
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def real_mirror(real_mirror_files: MirrorFiles) -> Iterator[RealMirror]:
    with RealMirror(real_mirror_files) as mirror:
        yield mirror
