"""`torchenv auto`, `sync`, `verify` and `rollback`: typer's parsing; auto's and sync's work and
texts are env_run.py's."""

from __future__ import annotations

from pathlib import Path

import typer

from torchenv.agent.cli import env_run, hostopts
from torchenv.agent.cli.console import make_reporter
from torchenv.agent.cli.env_run import settings_from, verify_lines
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json


def register(app: typer.Typer) -> None:
    app.command("auto")(with_verbosity(auto))
    app.command("sync")(with_verbosity(sync))
    app.command("verify")(with_verbosity(verify))
    app.command("rollback")(with_verbosity(rollback))


PREFIX_OPTION = typer.Option(
    None, "--prefix", metavar="DIR", help="The environment to manage (default: .venv)."
)
FORCE_OPTION = typer.Option(
    False, "--force", help="Install a lock made for another target; replace an unmanaged prefix."
)
DRY_RUN_OPTION = typer.Option(
    False,
    "--dry-run",
    help="Say what would be locked, installed and switched; change no environment, write no lock.",
)


# ---------------------------------------------------------------- commands


def auto(  # noqa: PLR0917 - typer maps each option to a parameter
    requirements: list[str] = typer.Argument(None, help="Requirements (default: the project's)."),
    requirement_file: list[Path] | None = typer.Option(
        None, "-r", "--requirement", metavar="FILE", help="Read requirements from FILE."
    ),
    prefix: str | None = PREFIX_OPTION,
    lock: Path | None = typer.Option(None, "--lock", metavar="FILE", help="Where the lock lives."),
    backend: str | None = hostopts.BACKEND,
    channel: str | None = hostopts.CHANNEL,
    torch_index_url: str | None = hostopts.TORCH_INDEX_URL,
    index_url: str | None = hostopts.INDEX_URL,
    lock_source: str | None = typer.Option(
        None,
        "--lock-source",
        metavar="DIR|URL",
        help="Take the lock published for this host's class (`lock --publish`) from there.",
    ),
    lock_source_missing: str | None = typer.Option(
        None, "--lock-source-missing", help="resolve or fail, when it has no lock for this host."
    ),
    replay: Path | None = hostopts.REPLAY,
    host_report: Path | None = hostopts.HOST_REPORT,
    os: str | None = hostopts.OS,
    arch: str | None = hostopts.ARCH,
    python: str | None = hostopts.PYTHON,
    python_version: str | None = hostopts.PYTHON_VERSION,
    python_platform: str | None = hostopts.PYTHON_PLATFORM,
    driver: str | None = hostopts.DRIVER,
    gpu: list[str] | None = hostopts.GPU,
    rocm_gfx: list[str] | None = hostopts.ROCM_GFX,
    xpu: bool = hostopts.XPU,
    macos: str | None = hostopts.MACOS,
    force: bool = FORCE_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Probe, select, lock, sync and verify; nothing at all when nothing changed."""
    guarded(as_json, lambda: env_run.run_auto(
        requirements=requirements, requirement_file=requirement_file, prefix=prefix, lock=lock,
        backend=backend, channel=channel, torch_index_url=torch_index_url, index_url=index_url,
        lock_source=lock_source, lock_source_missing=lock_source_missing, replay=replay,
        host_report=host_report, os=os, arch=arch, python=python, python_version=python_version,
        python_platform=python_platform, driver=driver, gpu=gpu, rocm_gfx=rocm_gfx, xpu=xpu,
        macos=macos, force=force, dry_run=dry_run, as_json=as_json,
    ))  # fmt: skip


def sync(  # noqa: PLR0917 - typer maps each option to a parameter
    lock: Path = typer.Argument(..., help="The pylock.toml to install."),
    prefix: str | None = PREFIX_OPTION,
    replay: Path | None = hostopts.REPLAY,
    host_report: Path | None = hostopts.HOST_REPORT,
    python: str | None = hostopts.PYTHON,
    python_version: str | None = hostopts.PYTHON_VERSION,
    force: bool = FORCE_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Build the environment from a lock (hash-checked, no resolution) and switch to it."""
    guarded(as_json, lambda: env_run.run_sync(
        lock=lock, prefix=prefix, replay=replay, host_report=host_report, python=python,
        python_version=python_version, force=force, dry_run=dry_run, as_json=as_json,
    ))  # fmt: skip


def verify(
    prefix: str | None = PREFIX_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the environment's interpreter: import torch, check the build, exercise each device."""

    def body() -> None:
        from torchenv.agent.base.options import ProbeOptions
        from torchenv.agent.host.source import HostSource
        from torchenv.agent.pipeline import commands

        settings = settings_from(prefix=prefix)
        env = Path(str(settings.get_value("prefix")))
        report = commands.verify_prefix(
            env, HostSource().load(ProbeOptions.from_settings(settings))
        )
        if not as_json:
            typer.echo("\n".join(verify_lines(report)))
        commands.check_files(env)
        if not as_json:
            typer.echo("  ok   files: every installed file matches its wheel's RECORD hash")
        if not report.ok:
            raise commands.verify_failed(env, report)
        if as_json:
            emit_json({"prefix": str(env), **report.to_json()})

    guarded(as_json, body)


def rollback(
    prefix: str | None = PREFIX_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Switch back to the environment that was active before the last sync."""

    def body() -> None:
        from torchenv.agent.pipeline import commands

        env = Path(str(settings_from(prefix=prefix).get_value("prefix")))
        where, active, previous = commands.rollback_prefix(env, make_reporter(as_json))
        if as_json:
            emit_json({"prefix": str(where), "active": active, "previous": previous})
        else:
            typer.echo(f"{where} -> {active} (was {previous})")

    guarded(as_json, body)
