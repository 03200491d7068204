"""Settings precedence: command line > environment > pyproject > user > system > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.base.indexconfig import default_index_from_tools, read_pip_config
from torchenv.agent.base.settings import PYTORCH_INDEX, load_settings


@pytest.fixture
def layers(tmp_path: Path) -> dict[str, Path]:
    project = tmp_path / "project" / "sub"
    project.mkdir(parents=True)
    (tmp_path / "project" / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.torchenv]\nchannel = "test"\nprefix = "envs/py"\n'
    )
    user = tmp_path / "user.toml"
    user.write_text('channel = "nightly"\nresolver = "pip"\nprefix = "u"\n')
    system = tmp_path / "system.toml"
    system.write_text('resolver = "uv"\nprobe-timeout = 2.5\nbackend = "cu126"\n')
    return {"cwd": project, "user": user, "system": system}


def _load(
    layers: dict[str, Path], cli: dict[str, object] | None = None, env: dict[str, str] | None = None
):  # type: ignore[no-untyped-def]
    return load_settings(
        cli or {},
        env=env or {"HOME": "/nonexistent"},
        cwd=layers["cwd"],
        user_config=layers["user"],
        system_config=layers["system"],
    )


def test_each_layer_wins_over_the_ones_below(layers: dict[str, Path]) -> None:
    settings = _load(layers)
    assert settings["channel"].value == "test"
    assert settings["channel"].source.startswith("pyproject.toml (")
    assert settings["prefix"].value == "envs/py"
    assert settings["resolver"].value == "pip"  # user file beats system file
    assert settings["resolver"].source.startswith("user config")
    assert settings["probe-timeout"].value == 2.5
    assert settings["backend"].source.startswith("system config")
    assert settings["torch-index-url"].value == PYTORCH_INDEX
    assert settings["torch-index-url"].source == "default"


def test_environment_beats_files_and_command_line_beats_environment(
    layers: dict[str, Path],
) -> None:
    env = {
        "HOME": "/nonexistent",
        "TORCHENV_CHANNEL": "nightly",
        "TORCHENV_TORCH_INDEX_URL": "http://mirror.local/whl/",
    }
    settings = _load(layers, env=env)
    assert settings["channel"].value == "nightly"
    assert settings["channel"].source == "environment (TORCHENV_CHANNEL)"
    assert settings["torch-index-url"].value == "http://mirror.local/whl"
    settings = _load(layers, cli={"channel": "stable", "prefix": None}, env=env)
    assert settings["channel"].value == "stable"
    assert settings["channel"].source == "command line"
    assert settings["prefix"].value == "envs/py"  # None on the command line means "not given"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('channel = "weekly"\n', "must be one of"),
        ("probe-timeout = -1\n", "positive"),
        ('torch-index-url = "ftp://x"\n', "URL"),
        ('no-such-setting = "x"\n', "unknown setting"),
        ("channel = \n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_file_and_what_to_do(
    layers: dict[str, Path], content: str, needle: str
) -> None:
    layers["user"].write_text(content)
    with pytest.raises(ConfigError) as info:
        _load(layers)
    assert needle in info.value.message
    assert info.value.hint
    assert str(layers["user"]) in info.value.message or "user config" in info.value.message


def test_a_tool_torchenv_that_is_not_a_table_is_a_config_error(layers: dict[str, Path]) -> None:
    pyproject = layers["cwd"].parent / "pyproject.toml"
    pyproject.write_text('[tool]\ntorchenv = "cu126"\n')
    with pytest.raises(ConfigError, match="not a table") as info:
        _load(layers)
    assert str(pyproject) in info.value.message
    assert info.value.hint


def test_default_index_honours_pip_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = http://pypi.mirror/simple/\n"
        "extra-index-url = file:///a file:///b\nfind-links = /w\n"
    )
    env = {"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(conf)}
    pip = read_pip_config(env)
    assert pip.index_url == "http://pypi.mirror/simple/"
    assert pip.extra_index_urls == ("file:///a", "file:///b")
    assert pip.find_links == ("/w",)
    assert default_index_from_tools(env) == ("http://pypi.mirror/simple", pip.source)
    assert default_index_from_tools({**env, "UV_DEFAULT_INDEX": "http://uv/simple"}) == (
        "http://uv/simple",
        "environment (UV_DEFAULT_INDEX)",
    )
    settings = load_settings(
        {}, env=env, cwd=tmp_path, user_config=tmp_path / "none", system_config=tmp_path / "none"
    )
    assert settings["index-url"].value == "http://pypi.mirror/simple"
    assert "pip configuration" in settings["index-url"].source
