"""One test's torchenv settings, apart from the machine's: only the simulator's indexes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from indexsim import IndexSim


def use_sim(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sim: IndexSim,
    *,
    user_config: str = "none.toml",
) -> None:
    """Drop every TORCHENV_ variable, then point the indexes at `sim` and the cache and the
    user and system configuration files into `tmp_path`."""
    for key in list(os.environ):
        if key.startswith("TORCHENV_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHENV_TORCH_INDEX_URL", sim.torch_index_url)
    monkeypatch.setenv("TORCHENV_INDEX_URL", sim.pypi_url)
    monkeypatch.setenv("TORCHENV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHENV_USER_CONFIG", str(tmp_path / user_config))
    monkeypatch.setenv("TORCHENV_SYSTEM_CONFIG", str(tmp_path / "none.toml"))
