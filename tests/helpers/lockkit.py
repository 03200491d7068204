"""What the lock tests share with the fault tests: a chosen build, settings for a simulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexsim import IndexSim

from torchenv.agent.base.settings import Settings, load_settings


@dataclass(frozen=True)
class Chosen:
    backend: str
    channel: str = "stable"
    torch: str | None = "2.9"
    reasons: tuple[str, ...] = ("chosen by the test",)


def settings_for(sim: IndexSim, tmp_path: Path) -> Settings:
    return load_settings(
        {
            "torch-index-url": sim.torch_index_url,
            "index-url": sim.pypi_url,
            "cache-dir": str(tmp_path / "cache"),
        },
        env={},
        cwd=tmp_path,
        user_config=tmp_path / "none.toml",
        system_config=tmp_path / "none.toml",
    )
