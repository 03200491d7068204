"""`torchenv probe` and `torchenv config`."""

from __future__ import annotations

from pathlib import Path

import typer

from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json


def register(app: typer.Typer) -> None:
    app.command("probe")(with_verbosity(probe))
    app.command("config")(with_verbosity(config))


def probe(
    as_json: bool = JSON_OPTION,
    record: Path | None = typer.Option(
        None,
        "--record",
        metavar="DIR",
        help="Also write everything the probes read into DIR (attach it to bug reports).",
    ),
    replay: Path | None = typer.Option(
        None, "--replay", metavar="DIR", help="Describe the host recorded in DIR instead."
    ),
    disk_path: str | None = typer.Option(
        None, "--disk-path", help="Report free disk space here (default: the prefix)."
    ),
) -> None:
    """Read this host: GPUs, drivers, CPU, Python, OS. Changes nothing."""

    def body() -> None:
        from torchenv.agent.base.options import ProbeOptions
        from torchenv.agent.base.settings import load_settings
        from torchenv.agent.host.source import load_host

        settings = load_settings()
        report = load_host(
            replay=replay,
            record=record,
            disk_path=disk_path or str(settings.get_value("prefix")),
            **ProbeOptions.from_settings(settings).as_kwargs(),
        )
        if as_json:
            emit_json(report.to_json())
            return
        from torchenv.agent.cli.render import host_summary

        typer.echo("\n".join(host_summary(report)))
        if record is not None:
            typer.echo(f"recorded into {record}; replay with `torchenv probe --replay {record}`")

    guarded(as_json, body)


def config(as_json: bool = JSON_OPTION) -> None:
    """Show every setting in force and where it came from."""

    def body() -> None:
        from torchenv.agent.base.settings import BY_KEY, load_settings

        settings = load_settings()
        if as_json:
            emit_json(settings.to_json())
            return
        width = max(len(k) for k in settings)
        for key, value in settings.items():
            typer.echo(f"{key:<{width}}  {value.value}")
            typer.echo(
                f"{'':<{width}}    from {value.source}; {BY_KEY[key].help}; "
                f"env {', '.join(BY_KEY[key].env_vars)}"
            )

    guarded(as_json, body)
