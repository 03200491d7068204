"""`torchenv auto`, `sync`, `verify` and `rollback`: parse arguments, call the core, render."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchenv.agent.cli import hostflags, hostopts
from torchenv.agent.cli.console import make_reporter
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.pipeline.core import AutoResult
    from torchenv.agent.pipeline.dryrun import Plan
    from torchenv.agent.verify.check import VerifyReport


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


# ---------------------------------------------------------------- rendering


def verify_lines(report: VerifyReport) -> list[str]:
    marks = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}
    return [
        f"  {marks[c.status.value]} {c.name}: {c.detail}"
        + (f" ({c.seconds:.3f} s)" if c.seconds is not None else "")
        for c in report.checks
    ]


def auto_lines(result: AutoResult) -> list[str]:
    host = result.host
    nvidia = host.get("nvidia") or []
    gpus = nvidia[3] if len(nvidia) > 3 else []
    python = (host.get("python") or ["", ""])[1]
    lines = [
        f"host      {host.get('os')} {host.get('arch')}, Python {python}"
        + (f", NVIDIA driver {nvidia[2]}, GPUs {' '.join(gpus)}" if gpus else "")
        + f" (fingerprint {result.fingerprint})",
        f"choice    torch {result.torch} ({result.backend})",
    ]
    lines += [f"  because {r}" for r in result.reasons]
    lines += [f"  skipped {r}" for r in result.skipped]
    lines.append(f"lock      {result.lock_path}" + (" (new)" if result.relocked else " (reused)"))
    lines.append(f"env       {result.prefix} -> {result.env_id}")
    if result.action == "unchanged":
        lines.append("nothing to do: host, request and lock unchanged; verified before")
    else:
        lines.append("installed " + ", ".join(f"{n} {v}" for n, v in result.installed))
        if result.verify is not None:
            lines.append("verified" if result.verify.ok else "verification FAILED")
            lines += verify_lines(result.verify)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.stages.items())
    lines.append(f"time      {result.seconds:.2f} s ({stages})")
    lines += [f"note      {n}" for n in result.notes]
    return lines


# ---------------------------------------------------------------- helpers


def _settings(**cli: Any) -> Settings:
    from torchenv.agent.base.settings import load_settings

    return load_settings({k.replace("_", "-"): v for k, v in cli.items()})


def _show_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        emit_json(plan.to_json())
    else:
        typer.echo("\n".join(plan.lines()))


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

    def body() -> None:
        from torchenv.agent.base.options import AutoOptions
        from torchenv.agent.cli import fastpath_write
        from torchenv.agent.cli.lock_run import check_lock_name
        from torchenv.agent.cli.reqfiles import requirement_file_lines
        from torchenv.agent.pipeline import core as pipeline

        if lock is not None:
            check_lock_name(lock, "--lock")  # auto writes it: PEP 751's names, as `lock -o`

        reqs = (*(requirements or ()), *requirement_file_lines(requirement_file or ()))
        pending = fastpath_write.begin(__file__)  # the console script's no-op stamp
        settings = _settings(
            prefix=prefix, backend=backend, channel=channel,
            torch_index_url=torch_index_url, index_url=index_url, lock_source=lock_source,
            lock_source_missing=lock_source_missing,
        )  # fmt: skip
        options = AutoOptions.from_settings(settings)
        source = hostflags.host_source(
            replay=replay, host_report=host_report, os=os, arch=arch, python=python,
            driver=driver, gpu=gpu, rocm_gfx=rocm_gfx, xpu=xpu, macos=macos,
            python_version=python_version, python_platform=python_platform,
        )  # fmt: skip
        if dry_run:
            from torchenv.agent.pipeline.dryrun import plan_auto

            _show_plan(plan_auto(
                reqs, options=options, source=source,
                reporter=make_reporter(as_json), lock_path=lock, force=force,
            ), as_json)  # fmt: skip
            return
        result = pipeline.auto(
            reqs, options=options, reporter=make_reporter(as_json), source=source,
            lock_path=lock, force=force,
        )  # fmt: skip
        if as_json:
            emit_json(result.to_json())
        else:
            typer.echo("\n".join(auto_lines(result)))
        if pending is not None and not requirement_file:  # -r files are inputs it cannot see
            pending.finish(
                result, settings=settings, requirements=reqs, lock=lock,
                live=source.devices_here, as_json=as_json,
                render=lambda r: "\n".join(auto_lines(r)) + "\n",
            )  # fmt: skip

    guarded(as_json, body)


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

    def body() -> None:
        from torchenv.agent.base.options import ProbeOptions
        from torchenv.agent.pipeline import commands

        settings = _settings(prefix=prefix)
        source = hostflags.host_source(
            replay=replay, host_report=host_report, python=python, python_version=python_version
        )
        if dry_run:
            from torchenv.agent.pipeline.dryrun import plan_sync

            _show_plan(plan_sync(
                lock, commands.Place.from_settings(settings),
                source.load(ProbeOptions.from_settings(settings)),
                force=force, reporter=make_reporter(as_json),
            ), as_json)  # fmt: skip
            return
        result = commands.sync_lock(
            lock, commands.Place.from_settings(settings),
            lambda: source.load(ProbeOptions.from_settings(settings)),
            devices_here=source.devices_here, force=force, reporter=make_reporter(as_json),
        )  # fmt: skip
        if as_json:
            emit_json(result.to_json())
            return
        typer.echo(f"switched {result.prefix} to {result.env_id} ({result.installer})")
        if result.adopted:
            typer.echo(f"your previous environment was kept at {result.adopted}")
        if result.verify is not None:
            typer.echo("\n".join(verify_lines(result.verify)))
        for note in result.notes:
            typer.echo(f"note: {note}")

    guarded(as_json, body)


def verify(
    prefix: str | None = PREFIX_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the environment's interpreter: import torch, check the build, exercise each device."""

    def body() -> None:
        from torchenv.agent.base.options import ProbeOptions
        from torchenv.agent.host.source import HostSource
        from torchenv.agent.pipeline import commands

        settings = _settings(prefix=prefix)
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

        env = Path(str(_settings(prefix=prefix).get_value("prefix")))
        where, active, previous = commands.rollback_prefix(env, make_reporter(as_json))
        if as_json:
            emit_json({"prefix": str(where), "active": active, "previous": previous})
        else:
            typer.echo(f"{where} -> {active} (was {previous})")

    guarded(as_json, body)
