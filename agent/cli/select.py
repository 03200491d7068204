"""`torchenv select` and `torchenv catalog show|refresh`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchenv.agent.cli import hostopts
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json, json_text

if TYPE_CHECKING:
    from torchenv.backends.catalog import Catalog
    from torchenv.backends.select import Selection

catalog_app = typer.Typer(
    name="catalog",
    help="The torch-backend catalog: show or refresh it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.command("select")(with_verbosity(select_command))
    app.add_typer(catalog_app, name="catalog")


def select_command(  # noqa: PLR0917 - typer maps parameters to options
    requirements: list[str] | None = typer.Argument(
        None, metavar="[REQUIREMENT]...", help="e.g. 'torch>=2.6' torchvision (default: torch)."
    ),
    as_json: bool = JSON_OPTION,
    explain: bool = typer.Option(False, "--explain", help="Show every candidate and why."),
    replay: Path | None = typer.Option(
        None, "--replay", metavar="DIR", help="Select for the host recorded in DIR."
    ),
    host_report: Path | None = typer.Option(
        None, "--host-report", metavar="FILE", help="Select for the host in a `probe --json` file."
    ),
    os_name: str | None = typer.Option(None, "--os", help="linux, windows or macos."),
    arch: str | None = typer.Option(None, "--arch", help="x86_64, aarch64 or arm64."),
    python: str | None = hostopts.PYTHON,
    python_version: str | None = hostopts.PYTHON_VERSION,
    python_platform: str | None = hostopts.PYTHON_PLATFORM,
    driver: str | None = typer.Option(None, "--driver", help="NVIDIA driver, e.g. 580.95.05."),
    gpu: list[str] | None = typer.Option(
        None, "--gpu", help="A GPU's compute capability (repeatable), e.g. 8.6."
    ),
    rocm_gfx: list[str] | None = typer.Option(
        None, "--rocm-gfx", help="An AMD gfx target (repeatable), e.g. gfx1100."
    ),
    xpu: bool = typer.Option(False, "--xpu", help="The host has an Intel GPU."),
    macos: str | None = typer.Option(None, "--macos", help="The macOS version, e.g. 14.5."),
    channel: str | None = typer.Option(None, "--channel", help="stable, test or nightly."),
    backend: str | None = hostopts.BACKEND,
    index_url: str | None = hostopts.INDEX_URL,
    torch_index_url: str | None = hostopts.TORCH_INDEX_URL,
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Do not ask the index what it holds: use the pages kept in the cache (their age "
        "is shown), else the catalog alone.",
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Read every index page again (ignore index-max-age)."
    ),
) -> None:
    """Choose the torch release and backend (cpu, cuNNN, rocmX.Y, xpu, mps) for a host."""

    def body() -> None:
        from torchenv.agent.base.options import ProbeOptions, SelectionOptions
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.cli import fastpath_write
        from torchenv.agent.cli.hostflags import host_source

        pending = fastpath_write.begin(__file__)  # the console script keeps its answer

        settings = load_settings({
            "channel": channel, "backend": backend, "index-url": index_url,
            "torch-index-url": torch_index_url, "index-max-age": "0" if refresh else None,
        })  # fmt: skip
        host = host_source(
            replay=replay, host_report=host_report, os=os_name, arch=arch, python=python,
            driver=driver, gpu=gpu, rocm_gfx=rocm_gfx, xpu=xpu, macos=macos,
            python_version=python_version, python_platform=python_platform,
        ).load(ProbeOptions.from_settings(settings))  # fmt: skip
        from torchenv.agent.pipeline.select_with_index import run_selection

        result = run_selection(
            host,
            tuple(requirements or ("torch",)),
            SelectionOptions.from_settings(settings),
            offline=offline,
        )
        if as_json:
            emit_json(result.to_json())
        elif explain:
            typer.echo(explain_text(result))
        else:
            typer.echo(summary_text(result))
        if pending is not None:
            pending.finish_select(
                json_text(result.to_json()) if as_json
                else (explain_text(result) if explain else summary_text(result)) + "\n",
                settings=settings, host_given=replay is not None or host_report is not None,
                offline=offline,
            )  # fmt: skip

    guarded(as_json, body)


def summary_text(result: Selection) -> str:
    lines = [
        f"torch {result.torch} {result.backend}",
        f"index    {result.index_url}",
        f"channel  {result.channel}",
    ]
    lines += [f"why      {r}" for r in result.reasons[:3]]
    lines += [f"skipped  {r}" for r in result.skipped]
    lines += [f"warning  {w}" for w in result.warnings]
    return "\n".join(lines)


def explain_text(result: Selection, limit: int = 12) -> str:
    """The chosen build, then one line per backend and reason from the newest release down."""
    from torchenv.backends.vocabulary import dotted

    chosen = result.candidates[0]
    head = [
        f"chosen: torch {result.torch} + {result.backend}  ({result.platform}, Python "
        f"{result.python}, channel {result.channel})",
        f"index:  {result.index_url}",
        "",
    ]
    floor = dotted(chosen.torch)
    others = sorted(
        (c for c in result.candidates[1:] if dotted(c.torch) >= floor),
        key=lambda c: dotted(c.torch),
        reverse=True,
    )
    groups: dict[tuple[str, bool, str], list[str]] = {}
    for c in others:
        groups.setdefault((c.backend, c.ok, c.reasons[0]), []).append(c.torch)
    rows = [("PICK", chosen.torch, chosen.backend, "; ".join(chosen.reasons[:2]), chosen.flags)]
    for (backend, ok, reason), releases in list(groups.items())[: limit - 1]:
        span = releases[0] if len(releases) == 1 else f"{releases[-1]}-{releases[0]}"
        rows.append(("ok" if ok else "no", span, backend, reason, ()))
    width = max(len(r[1]) for r in rows)
    table = [
        f"  {mark:<4} {span:<{width}}  {backend:<9} {reason}"
        + (f" [{', '.join(f.value for f in flags)}]" if flags else "")
        for mark, span, backend, reason, flags in rows
    ]
    tail = [f"skipped: {r}" for r in result.skipped]
    tail += [f"warning: {w}" for w in result.warnings]
    return "\n".join([*head, *table, *([""] if tail else []), *tail])


# --- torchenv catalog ---------------------------------------------------------------------


@catalog_app.command("show")
@with_verbosity
def catalog_show(as_json: bool = JSON_OPTION) -> None:
    """List the releases and backends torchenv knows, per platform."""

    def body() -> None:
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.index import catalog_refresh

        catalog = catalog_refresh.load(load_settings().get_value("cache-dir"))
        rows = catalog_rows(catalog)
        if as_json:
            emit_json(
                {
                    "live_index": catalog.live_index,
                    "live_fetched": catalog.live_fetched,
                    "releases": rows,
                    "sources": list(catalog.sources),
                }
            )
            return
        for row in rows:
            typer.echo(f"torch {row['torch']}  Python {row['python'][0]}-{row['python'][-1]}")
            for platform, builds in row["platforms"].items():
                typer.echo(f"  {platform:<15} {' '.join(builds)}")
        if catalog.live_fetched:
            typer.echo(f"merged with {catalog.live_index} as of {catalog.live_fetched}")

    guarded(as_json, body)


def catalog_rows(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "torch": r.torch,
            "python": list(r.python),
            "pypi_default": r.pypi_default,
            "origin": r.origin,
            "platforms": {
                p: [b.backend + ("*" if b.inferred else "") for b in builds]
                for p, builds in r.platforms
            },
        }
        for r in catalog.releases
    ]


@catalog_app.command("refresh")
@with_verbosity
def catalog_refresh_command(
    as_json: bool = JSON_OPTION,
    torch_index_url: str | None = hostopts.TORCH_INDEX_URL,
    backend: list[str] | None = typer.Option(
        None,
        "--backend",
        help="Ask only these backends "
        "(repeatable); default: every known one and the "
        "next CUDA and ROCm names.",
    ),
) -> None:
    """Read the live PyTorch index and store which torch builds exist beside the shipped data."""

    def body() -> None:
        from torchenv.agent.base.options import IndexConfig
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.index import catalog_refresh
        from torchenv.agent.pipeline.locking import refresh_catalog

        index = IndexConfig.from_settings(load_settings({"torch-index-url": torch_index_url}))
        done = refresh_catalog(index, backend or ())
        path, live, merged, names = done.path, done.live, done.catalog, done.backends_asked
        if as_json:
            emit_json(
                {
                    "path": str(path),
                    "backends": live["backends"],
                    "newest": catalog_refresh.newest_on_index(live),
                    "wheels": len(live["wheels"]),
                    "releases": catalog_rows(merged),
                }
            )
            return
        typer.echo(
            f"read {len(names)} backend pages from {live['index']}; "
            f"found {', '.join(live['backends']) or 'nothing'}"
        )
        typer.echo(f"stored in {path}; {catalog_refresh.newest_text(live)}")

    guarded(as_json, body)
