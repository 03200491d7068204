"""Settings: command line > TORCHENV_* > pyproject > user file > system file > defaults."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.agent.base.errors import ConfigError

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_INDEX = "https://pypi.org/simple"
SYSTEM_CONFIG = "/etc/torchenv/config.toml"


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def _lock_source(raw: str) -> str:
    from torchenv.agent.base.locksetting import parse_source

    parse_source(raw)  # ValueError says why it is not a directory or an http(s) URL
    return raw.strip()


def _url(raw: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from exc
    if parts.scheme not in ("http", "https", "file"):
        raise ValueError("must be an http://, https:// or file:// URL")
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError("names no host")
    if parts.scheme == "file" and not parts.path.startswith("/"):
        raise ValueError("a file:// URL needs an absolute path")
    if any(c.isspace() for c in raw.strip()):
        raise ValueError("contains white space")
    return raw.strip().rstrip("/")


@dataclass(frozen=True)
class Setting:
    """One setting: its key and help, how its default is worked out, how a value is parsed."""

    key: str
    help: str
    default: Callable[[Mapping[str, str]], Any]
    parse: Callable[[str], Any] = str
    number: bool = False  # a TOML file may give it as a number; every other setting is a string
    env_aliases: tuple[str, ...] = ()  # more variables, read in this order after env_var

    @property
    def env_var(self) -> str:
        return "TORCHENV_" + self.key.upper().replace("-", "_")

    @property
    def env_vars(self) -> tuple[str, ...]:
        return (self.env_var, *self.env_aliases)


def _default_cache_dir(env: Mapping[str, str]) -> str:
    if "CACHE_DIRECTORY" in env:  # systemd's CacheDirectory=
        return env["CACHE_DIRECTORY"].split(":")[0]
    import platformdirs

    return platformdirs.user_cache_dir("torchenv", appauthor=False)


def _default_state_dir(env: Mapping[str, str]) -> str:
    if "STATE_DIRECTORY" in env:  # systemd's StateDirectory=
        return env["STATE_DIRECTORY"].split(":")[0]
    import platformdirs

    return platformdirs.user_state_dir("torchenv", appauthor=False)


@dataclass(frozen=True)
class Sourced:
    """A default that knows where it came from (e.g. the user's pip configuration)."""

    value: Any
    source: str


def _default_index_url(env: Mapping[str, str]) -> Sourced:
    from torchenv.agent.base.indexconfig import default_index_from_tools

    found = default_index_from_tools(env)
    return Sourced(*found) if found else Sourced(PYPI_INDEX, "default")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "torch-index-url", "base of the PyTorch index (…/whl)", lambda _env: PYTORCH_INDEX, _url
    ),
    Setting(
        "index-url",
        "the default index for everything but the torch family",
        _default_index_url,
        _url,
    ),
    Setting("prefix", "the virtual environment torchenv manages", lambda _env: ".venv"),
    Setting(
        "channel",
        "stable, test (release candidates) or nightly",
        lambda _env: "stable",
        _choice("stable", "test", "nightly"),
    ),
    Setting(
        "backend",
        "auto, or a torch backend such as cpu, cu126, rocm6.4, xpu, mps",
        lambda _env: "auto",
        env_aliases=("TORCHENV_TORCH_BACKEND", "UV_TORCH_BACKEND"),  # uv's name, as uv reads it
    ),
    Setting(
        "resolver",
        "auto (uv when available), uv or pip",
        lambda _env: "auto",
        _choice("auto", "uv", "pip"),
    ),
    Setting(
        "link-mode",
        "how the installer puts files into an environment: auto (copy-on-write where the file "
        "system can, else copy: environments never share files), copy, clone, or hardlink "
        "(fastest; environments and the installer's cache then share files)",
        lambda _env: "auto",
        _choice("auto", "copy", "clone", "hardlink"),
    ),
    Setting("cache-dir", "HTTP and metadata cache", _default_cache_dir),
    Setting("state-dir", "daemon state", _default_state_dir),
    # One lock per hardware class (docs/fleet.md): `torchenv lock --publish DIR` writes them.
    Setting(
        "lock-source",
        "a directory or http(s) URL of published locks (`torchenv lock --publish`): take the "
        "lock for this host's class from there instead of resolving (empty: none)",
        lambda _env: "",
        _lock_source,
    ),
    Setting(
        "lock-source-missing",
        "when the lock source has no lock for this host's class: resolve (lock for this "
        "host) or fail",
        lambda _env: "resolve",
        _choice("resolve", "fail"),
    ),
    Setting(
        "lock-source-max-age",
        "seconds a lock index fetched over HTTP is used without asking the server again",
        lambda _env: 60.0,
        _non_negative_float,
    ),
    Setting(
        "index-max-age",
        "seconds an index page read before is used without asking the index again, where "
        "the index sets no Cache-Control of its own (0: always revalidate; `--refresh` "
        "reads every page again)",
        lambda _env: 600.0,
        _non_negative_float,
        number=True,
    ),
    Setting(
        "probe-timeout",
        "seconds any probe command (nvidia-smi, ...) may take",
        lambda _env: 5.0,
        _positive_float,
        number=True,
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class Value:
    """One setting's value and where it came from."""

    key: str
    value: Any
    source: str  # "command line", "environment (TORCHENV_X)", "pyproject.toml (/p)", ...


class Settings(Mapping[str, Value]):
    """Every setting's value and source. A default is worked out when it is first read (the
    platform's directories, pip's and uv's index), so a command pays for the ones it uses."""

    def __init__(self, given: Mapping[str, Value], env: Mapping[str, str]) -> None:
        self._values = dict(given)
        self._env = env

    def __getitem__(self, key: str) -> Value:
        if key not in self._values:
            self._values[key] = _default(BY_KEY[key], self._env)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(BY_KEY)

    def __len__(self) -> int:
        return len(BY_KEY)

    def get_value(self, key: str) -> Any:
        return self[key].value

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {k: {"value": v.value, "source": v.source} for k, v in self.items()}


def find_pyproject(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file the user wrote (at most MAX_CONFIG_FILE); ConfigError names what is wrong."""
    from torchenv.agent.base import toml as tomllib
    from torchenv.agent.base.fsutil import read_bounded
    from torchenv.agent.base.limits import MAX_CONFIG_FILE, TooLarge

    try:
        text = read_bounded(path, MAX_CONFIG_FILE, "configuration file").decode("utf-8")
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="check the file's permissions, or remove it",
        ) from exc
    except TooLarge as exc:
        raise ConfigError(str(exc), hint=f"{path} is not a configuration file; remove it") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded), so not TOML",
            hint="fix the file or remove it; `torchenv config` shows what is in force",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc})",
            hint="fix the file or remove it; `torchenv config` shows what is in force",
        ) from exc


def _file_layer(path: Path, table: object, label: str) -> dict[str, tuple[str, str]]:
    if not isinstance(table, dict):
        raise ConfigError(
            f"the torchenv settings in {path} are not a table",
            hint="write them as `key = value` lines under [tool.torchenv]",
        )
    layer: dict[str, tuple[str, str]] = {}
    for raw_key, raw in table.items():
        key = raw_key.replace("_", "-")
        if key not in BY_KEY:
            if isinstance(raw, (dict, list)):
                continue  # tables for other features (the agent's [[environment]]s)
            raise ConfigError(
                f"unknown setting {raw_key!r} in {path}",
                hint=f"known settings: {', '.join(BY_KEY)}",
            )
        setting = BY_KEY[key]
        numeric = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if not (isinstance(raw, str) or (setting.number and numeric)):
            kind = "a number or a string" if setting.number else "a string"
            raise ConfigError(
                f"{raw_key} = {raw!r} in {path} is a TOML {_toml_type(raw)}; it must be {kind}",
                hint=f'write it as {raw_key} = "…" ({setting.help})',
                details={"file": str(path), "key": raw_key},
            )
        layer[key] = (str(raw), f"{label} ({path})")
    return layer


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return names.get(type(value), "table" if isinstance(value, dict) else type(value).__name__)


def project_dependencies(pyproject: Path, document: Mapping[str, Any]) -> list[str]:
    """`[project] dependencies` of a pyproject document; ConfigError when they are malformed."""
    project = document.get("project", {})
    deps = project.get("dependencies", []) if isinstance(project, dict) else None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(
            f"[project] dependencies in {pyproject} are not an array of requirement strings",
            hint='write them as dependencies = ["torch>=2.6", "numpy"] under [project]',
        )
    return deps


def tool_table(pyproject: Path, document: Mapping[str, Any]) -> object:
    """`[tool.torchenv]` of a pyproject document ({} when absent); ConfigError for a bad [tool]."""
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(
            f"tool in {pyproject} is a TOML {_toml_type(tool)}, not a table",
            hint="write tool settings as [tool.NAME] tables",
        )
    return tool.get("torchenv", {})


def load_settings(
    cli: Mapping[str, Any | None] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user_config: Path | None = None,
    system_config: Path | None = None,
) -> Settings:
    """Resolve every setting with its source; raises ConfigError on a bad value or file."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if user_config is None:
        user_config = (
            Path(env["TORCHENV_USER_CONFIG"])
            if "TORCHENV_USER_CONFIG" in env
            else (_user_config_path())
        )
    if system_config is None:
        system_config = Path(env.get("TORCHENV_SYSTEM_CONFIG", SYSTEM_CONFIG))

    layers: list[dict[str, tuple[str, str]]] = []
    layers.append({k: (str(v), "command line") for k, v in (cli or {}).items() if v is not None})
    layers.append(
        {
            s.key: (env[name], f"environment ({name})")
            for s in SETTINGS
            for name in reversed(s.env_vars)  # the first variable set wins: written last
            if env.get(name)
        }
    )
    pyproject = find_pyproject(cwd)
    if pyproject is not None:
        table = tool_table(pyproject, read_toml(pyproject))
        layers.append(_file_layer(pyproject, table, "pyproject.toml"))
    for path, label in ((user_config, "user config"), (system_config, "system config")):
        if path.is_file():
            layers.append(_file_layer(path, read_toml(path), label))

    values: dict[str, Value] = {}
    for setting in SETTINGS:
        # Every layer's value is checked, so a typo in a shadowed file is found too.
        given = [
            Value(setting.key, _parse(setting, *layer[setting.key]), layer[setting.key][1])
            for layer in layers
            if setting.key in layer
        ]
        if given:
            values[setting.key] = given[0]
    return Settings(values, dict(env))


def _default(setting: Setting, env: Mapping[str, str]) -> Value:
    default = setting.default(env)
    if isinstance(default, Sourced):
        return Value(setting.key, default.value, default.source)
    return Value(setting.key, default, "default")


def _parse(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{setting.key} = {raw!r} from {source}: {exc}",
            hint=f"correct it there ({setting.help})",
        ) from exc


def _user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("torchenv", appauthor=False)) / "config.toml"
