"""The user's pip and uv configuration, read (never written) so torchenv honours their mirrors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ToolIndexConfig:
    """pip's index settings (index-url, extra-index-url, find-links) and where they were found."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    source: str = "default"
    files: tuple[str, ...] = field(default=())


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's files in its own order of increasing precedence (global, user, site)."""
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    home = Path(env.get("HOME", "~")).expanduser()
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    config_home = Path(env.get("XDG_CONFIG_HOME", home / ".config"))
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    if "VIRTUAL_ENV" in env:
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if "PIP_CONFIG_FILE" in env:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def read_pip_config(env: Mapping[str, str] | None = None) -> ToolIndexConfig:
    """index-url, extra-index-url and find-links as pip would see them ([global] and [install])."""
    import configparser  # here: listing the files (a kept answer stamps them) needs no parser

    env = os.environ if env is None else env
    parser = configparser.RawConfigParser()
    used: list[str] = []
    for path in pip_config_files(env):
        try:
            if parser.read(path):
                used.append(str(path))
        except (configparser.Error, UnicodeDecodeError):
            continue  # pip would complain; the default index still works

    def get(key: str) -> tuple[str | None, str]:
        env_key = "PIP_" + key.upper().replace("-", "_")
        if env.get(env_key):
            return env[env_key], f"environment ({env_key})"
        for section in ("install", "global"):
            if parser.has_option(section, key):
                return parser.get(section, key), "pip configuration (" + ", ".join(used) + ")"
        return None, "default"

    index, index_source = get("index-url")
    extra, extra_source = get("extra-index-url")
    links, _ = get("find-links")
    return ToolIndexConfig(
        index_url=index.strip() if index else None,
        extra_index_urls=tuple(extra.split()) if extra else (),
        find_links=tuple(links.split()) if links else (),
        source=index_source if index else extra_source,
        files=tuple(used),
    )


def default_index_from_tools(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The default index the user configured for uv or pip, with where it was found."""
    env = os.environ if env is None else env
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if env.get(name):
            return env[name].rstrip("/"), f"environment ({name})"
    pip = read_pip_config(env)
    if pip.index_url:
        return pip.index_url.rstrip("/"), pip.source
    return None
