"""`torchenv select` and `torchenv catalog show|refresh`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchenv.agent.cli import hostopts, select_run
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json

if TYPE_CHECKING:
    from torchenv.backends.catalog import Catalog

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
    guarded(as_json, lambda: select_run.run(
        requirements=requirements, as_json=as_json, explain=explain, replay=replay,
        host_report=host_report, os_name=os_name, arch=arch, python=python,
        python_version=python_version, python_platform=python_platform, driver=driver, gpu=gpu,
        rocm_gfx=rocm_gfx, xpu=xpu, macos=macos, channel=channel, backend=backend,
        index_url=index_url, torch_index_url=torch_index_url, offline=offline, refresh=refresh,
    ))  # fmt: skip


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
