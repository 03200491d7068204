"""The settings as typed, frozen values: built once from `Settings` at the edge (cli/, daemon/).

The core (host, index, lock, fleet, pipeline, ...) takes these and never reads the
string-keyed `Settings` bag itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings


@dataclass(frozen=True)
class IndexConfig:
    """Where packages come from, and where what was read from the indexes is kept."""

    torch_index_url: str  # the PyTorch index's base (…/whl)
    index_url: str  # the default index, for everything but the torch family
    cache_dir: Path
    page_max_age: float = 0.0  # seconds a page read before is used as it is (`index-max-age`)

    @property
    def default_index(self) -> str:
        return self.index_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexConfig:
        return cls(
            torch_index_url=str(settings.get_value("torch-index-url")),
            index_url=str(settings.get_value("index-url")),
            cache_dir=Path(str(settings.get_value("cache-dir"))),
            page_max_age=float(settings.get_value("index-max-age")),
        )


@dataclass(frozen=True)
class SelectionOptions:
    """What the selection is asked for beyond the requirements: the channel, the backend."""

    channel: str  # stable, test or nightly
    backend: str  # "auto" or a backend to force (cpu, cu126, ...)
    index: IndexConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> SelectionOptions:
        return cls(
            channel=str(settings.get_value("channel")),
            backend=str(settings.get_value("backend")),
            index=IndexConfig.from_settings(settings),
        )


@dataclass(frozen=True)
class LockOptions:
    """What a lock is made with: the selection's options and the resolver (auto, uv, pip)."""

    selection: SelectionOptions
    resolver: str

    @property
    def index(self) -> IndexConfig:
        return self.selection.index

    def request_values(self) -> dict[str, Any]:
        """The settings that decide what `auto` asks for, keyed as the lock's table names them
        (pipeline.decisions.REQUEST_KEYS)."""
        return {
            "backend": self.selection.backend,
            "channel": self.selection.channel,
            "torch-index-url": self.index.torch_index_url,
            "index-url": self.index.index_url,
            "resolver": self.resolver,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> LockOptions:
        return cls(
            selection=SelectionOptions.from_settings(settings),
            resolver=str(settings.get_value("resolver")),
        )


@dataclass(frozen=True)
class LockSourceConfig:
    """Where a node takes its class's published lock from (`lock-source`, docs/fleet.md)."""

    source: str  # a directory or an http(s) URL; "" for none
    missing: str  # resolve or fail, when the source has no lock for this class
    max_age: float  # seconds a lock index fetched over HTTP is used without asking again
    cache_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> LockSourceConfig:
        return cls(
            source=str(settings.get_value("lock-source") or ""),
            missing=str(settings.get_value("lock-source-missing")),
            max_age=float(settings.get_value("lock-source-max-age")),
            cache_dir=Path(str(settings.get_value("cache-dir"))),
        )


@dataclass(frozen=True)
class ProbeOptions:
    """How a host is probed: the time any probe command may take, and the cache."""

    command_timeout: float
    cache_dir: str

    def as_kwargs(self) -> dict[str, Any]:
        """The load_host arguments these give."""
        return {"command_timeout": self.command_timeout, "cache_dir": self.cache_dir}

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeOptions:
        return cls(
            command_timeout=float(settings.get_value("probe-timeout")),
            cache_dir=str(settings.get_value("cache-dir")),
        )


@dataclass(frozen=True)
class Place:
    """Where an environment lives and what it shares."""

    prefix: Path
    cache_dir: Path
    link_mode: str = "auto"
    prefix_is_default: bool = False  # no one set `prefix`: a project's .venv, beside it

    @classmethod
    def from_settings(cls, settings: Settings) -> Place:
        return cls(
            prefix=Path(str(settings.get_value("prefix"))),
            cache_dir=Path(str(settings.get_value("cache-dir"))),
            link_mode=str(settings.get_value("link-mode")),
            prefix_is_default=settings["prefix"].source == "default",
        )


@dataclass(frozen=True)
class AutoOptions:
    """Everything `auto` reads from the settings."""

    place: Place
    lock: LockOptions
    lock_source: LockSourceConfig
    probe: ProbeOptions

    @classmethod
    def from_settings(cls, settings: Settings) -> AutoOptions:
        return cls(
            place=Place.from_settings(settings),
            lock=LockOptions.from_settings(settings),
            lock_source=LockSourceConfig.from_settings(settings),
            probe=ProbeOptions.from_settings(settings),
        )
