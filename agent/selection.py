"""The selection with the settings in force: the catalog (with the last refresh) and select()."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchenv.agent.settings import Settings
    from torchenv.backends.select import Selection
    from torchenv.probes.report import HostReport


def run_selection(host: HostReport, requirements: tuple[str, ...], settings: Settings) -> Selection:
    """select() with the settings in force; raises SelectionError when nothing satisfies."""
    from torchenv.agent import catalog_refresh
    from torchenv.agent.errors import ConfigError, SelectionError
    from torchenv.backends.select import InvalidRequest, Request, select

    request = Request(
        requirements=requirements,
        channel=str(settings.get_value("channel")),
        backend=str(settings.get_value("backend")),
        torch_index_url=str(settings.get_value("torch-index-url")),
        default_index_url=str(settings.get_value("index-url")),
    )
    catalog = catalog_refresh.load(settings.get_value("cache-dir"))
    try:
        result = select(host, request, catalog)
    except InvalidRequest as exc:
        raise ConfigError(
            str(exc),
            hint="requirements look like 'torch>=2.6'; backends like cpu, cu126, rocm6.4, xpu, mps",
        ) from exc
    if not result.ok:
        hint = (
            ("what would unlock it: " + "; ".join(result.unlock))
            if result.unlock
            else ("see `torchenv select --explain` for every candidate")
        )
        raise SelectionError(
            "; ".join(result.reasons[:3]),
            hint=hint,
            details=result.to_json(),
        )
    return result
