"""`torchenv auto`, `sync`, `verify` and `rollback`: parse arguments, call the core, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchenv.agent.base.reporter import Reporter
from torchenv.agent.cli import hostopts
from torchenv.agent.cli.guard import JSON_OPTION, emit_json, guarded

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.pipeline.core import AutoResult, HostSource
    from torchenv.agent.verify.check import VerifyReport


def register(app: typer.Typer) -> None:
    app.command("auto")(auto)
    app.command("sync")(sync)
    app.command("verify")(verify)
    app.command("rollback")(rollback)


PREFIX_OPTION = typer.Option(
    None, "--prefix", metavar="DIR", help="The environment to manage (default: .venv)."
)
FORCE_OPTION = typer.Option(
    False, "--force", help="Install a lock made for another target; replace an unmanaged prefix."
)


# ---------------------------------------------------------------- rendering


class ConsoleReporter(Reporter):
    """Stage lines and a download bar on stderr (rich), for people at a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._bar: Any = None
        self._task: Any = None

    def stage_started(self, stage: str, detail: str = "") -> None:
        self.console.print(f"[bold]{stage}[/bold] {detail}".rstrip())

    def stage_finished(self, stage: str, seconds: float, detail: str = "") -> None:
        self._close_bar()
        self.console.print(f"  {stage} done in {seconds:.2f} s {detail}".rstrip())

    def progress(self, task: str, done: int, total: int | None) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if self._bar is None:
            self._bar = Progress(
                *Progress.get_default_columns(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(task, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def info(self, message: str) -> None:
        self.console.print(f"  {message}")

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")


def make_reporter(as_json: bool) -> Reporter:
    """Rich on a terminal; quiet with --json or when stderr is not a TTY."""
    if as_json or not sys.stderr.isatty():
        return Reporter()
    return ConsoleReporter()


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


def _source(options: hostopts.HostOptions) -> HostSource:
    from torchenv.agent.pipeline.core import HostSource

    flags = options.flags
    return HostSource(
        replay=options.replay, host_report=options.host_report,
        flags=flags if flags.any() else None,
    )  # fmt: skip


def _settings(**cli: Any) -> Settings:
    from torchenv.agent.base.settings import load_settings

    return load_settings({k.replace("_", "-"): v for k, v in cli.items()})


# ---------------------------------------------------------------- commands


def auto(  # noqa: PLR0917 - typer maps each option to a parameter
    requirements: list[str] = typer.Argument(None, help="Requirements (default: the project's)."),
    prefix: str | None = PREFIX_OPTION,
    lock: Path | None = typer.Option(None, "--lock", metavar="FILE", help="Where the lock lives."),
    backend: str | None = hostopts.BACKEND,
    channel: str | None = hostopts.CHANNEL,
    torch_index_url: str | None = typer.Option(None, "--torch-index-url"),
    index_url: str | None = typer.Option(None, "--index-url"),
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
    driver: str | None = hostopts.DRIVER,
    gpu: list[str] | None = hostopts.GPU,
    rocm_gfx: list[str] | None = hostopts.ROCM_GFX,
    xpu: bool = hostopts.XPU,
    macos: str | None = hostopts.MACOS,
    force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Probe, select, lock, sync and verify; nothing at all when nothing changed."""

    def body() -> None:
        from torchenv.agent.cli import fastpath_write
        from torchenv.agent.pipeline import core as pipeline

        pending = fastpath_write.begin()  # the console script's no-op stamp
        settings = _settings(
            prefix=prefix, backend=backend, channel=channel,
            torch_index_url=torch_index_url, index_url=index_url, lock_source=lock_source,
            lock_source_missing=lock_source_missing,
        )  # fmt: skip
        source = _source(hostopts.HostOptions.from_cli(
            replay=replay, host_report=host_report, os=os, arch=arch, python=python,
            driver=driver, gpu=gpu, rocm_gfx=rocm_gfx, xpu=xpu, macos=macos,
        ))  # fmt: skip
        result = pipeline.auto(
            tuple(requirements or ()), settings=settings, reporter=make_reporter(as_json),
            source=source, lock_path=lock, force=force,
        )  # fmt: skip
        if as_json:
            emit_json(result.to_json())
        else:
            typer.echo("\n".join(auto_lines(result)))
        if pending is not None:
            pending.finish(
                result, settings=settings, requirements=requirements or (), lock=lock,
                live=source.devices_here, as_json=as_json,
            )  # fmt: skip

    guarded(as_json, body)


def sync(  # noqa: PLR0917 - typer maps each option to a parameter
    lock: Path = typer.Argument(..., help="The pylock.toml to install."),
    prefix: str | None = PREFIX_OPTION,
    replay: Path | None = hostopts.REPLAY,
    host_report: Path | None = hostopts.HOST_REPORT,
    python: str | None = hostopts.PYTHON,
    force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Build the environment from a lock (hash-checked, no resolution) and switch to it."""

    def body() -> None:
        from torchenv.agent.env import sync as syncmod
        from torchenv.agent.lock.pylock import read_lock_file
        from torchenv.agent.pipeline import core as pipeline

        settings = _settings(prefix=prefix)
        options = hostopts.HostOptions.from_cli(
            replay=replay, host_report=host_report, python=python
        )
        source = _source(options)
        host = options.load(settings)
        from torchenv.agent.lock.resolvers.target import target_of

        parsed, raw = read_lock_file(lock)
        result = syncmod.sync(
            parsed.for_target(target_of(host)), raw, Path(settings.get_value("prefix")),
            host_facts=host.target_facts(),
            cache_dir=Path(settings.get_value("cache-dir")), reporter=make_reporter(as_json),
            verifier=pipeline.verifier_for(host, parsed, devices_here=source.devices_here),
            force=force, stamp={"fingerprint": host.fingerprint()},
            link_mode=settings.get_value("link-mode"),
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
        from torchenv.agent.base.errors import EnvironmentBuildError, VerifyError
        from torchenv.agent.env import venv
        from torchenv.agent.env.sync import LOCK_COPY
        from torchenv.agent.host.source import load_host, probe_settings
        from torchenv.agent.lock.pylock import read_pylock
        from torchenv.agent.pipeline import core as pipeline
        from torchenv.agent.verify import check as verifymod

        settings = _settings(prefix=prefix)
        env = Path(str(settings.get_value("prefix")))
        python = venv.python_in(env)
        if not python.exists():
            raise EnvironmentBuildError(
                f"there is no environment at {env}",
                hint="build one with `torchenv auto` or `torchenv sync LOCK`",
            )
        host = load_host(**probe_settings(settings))
        copy = env / LOCK_COPY
        expect = (
            pipeline.expectation(read_pylock(copy))
            if copy.is_file()
            else verifymod.Expectation(None, None)
        )
        plan = verifymod.plan_devices(host, expect.backend, devices_here=True)
        report = verifymod.verify_env(python, expect, plan)
        if not as_json:
            typer.echo("\n".join(verify_lines(report)))
        _check_files(env, as_json)
        if not report.ok:
            raise VerifyError(
                f"{env} failed verification: " + ", ".join(c.name for c in report.failed()),
                hint="run `torchenv auto` to rebuild it, or `torchenv rollback`",
                details={"prefix": str(env), **report.to_json()},
            )
        if as_json:
            emit_json({"prefix": str(env), **report.to_json()})

    guarded(as_json, body)


def _check_files(env: Path, as_json: bool) -> None:
    """Every installed file against its wheel's RECORD hash; damage is remembered for auto."""
    from torchenv.agent.base.errors import VerifyError
    from torchenv.agent.env import integrity, prefixlock, venv

    damage = integrity.full_check(env)
    if not damage:
        if not as_json:
            typer.echo("  ok   files: every installed file matches its wheel's RECORD hash")
        return
    layout = venv.Layout.for_prefix(env)
    if venv.active_env(layout) is not None:
        with prefixlock.hold(layout.lock_file, reporter=Reporter()):
            venv.mark_damaged(layout, {d.dist for d in damage})
    raise VerifyError(
        f"{env}: installed files differ from their wheels' RECORD hashes: "
        + integrity.describe(damage),
        hint="run `torchenv auto` to rebuild it from the locked wheels (the damaged "
        "distributions are dropped from the installer's cache first), or `torchenv rollback`",
        details={"prefix": str(env), "damaged": {d.dist: list(d.paths) for d in damage}},
    )


def rollback(
    prefix: str | None = PREFIX_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Switch back to the environment that was active before the last sync."""

    def body() -> None:
        from torchenv.agent.env import prefixlock, venv

        settings = _settings(prefix=prefix)
        layout = venv.Layout.for_prefix(str(settings.get_value("prefix")))
        reporter = make_reporter(as_json)
        venv.ensure_home(layout)
        with prefixlock.hold(layout.lock_file, reporter=reporter):
            active, previous = venv.rollback(layout)
        if as_json:
            emit_json({"prefix": str(layout.prefix), "active": active, "previous": previous})
        else:
            typer.echo(f"{layout.prefix} -> {active} (was {previous})")

    guarded(as_json, body)
