"""`torchenv auto` and `sync`'s work and texts, without typer: the typer commands (env.py) call
`run_auto` and `run_sync`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.cli import hostflags
from torchenv.agent.cli.console import make_reporter
from torchenv.agent.cli.outcome import echo, emit_json

if TYPE_CHECKING:
    from torchenv.agent.base.settings import Settings
    from torchenv.agent.pipeline.core import AutoResult
    from torchenv.agent.pipeline.dryrun import Plan
    from torchenv.agent.verify.check import VerifyReport


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


def settings_from(**cli: Any) -> Settings:
    from torchenv.agent.base.settings import load_settings

    return load_settings({k.replace("_", "-"): v for k, v in cli.items()})


def _show_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        emit_json(plan.to_json())
    else:
        echo("\n".join(plan.lines()))


# ---------------------------------------------------------------- commands


def run_auto(
    *,
    requirements: list[str] | None,
    requirement_file: list[Path] | None,
    prefix: str | None,
    lock: Path | None,
    backend: str | None,
    channel: str | None,
    torch_index_url: str | None,
    index_url: str | None,
    lock_source: str | None,
    lock_source_missing: str | None,
    replay: Path | None,
    host_report: Path | None,
    os: str | None,
    arch: str | None,
    python: str | None,
    python_version: str | None,
    python_platform: str | None,
    driver: str | None,
    gpu: list[str] | None,
    rocm_gfx: list[str] | None,
    xpu: bool,
    macos: str | None,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Probe, select, lock, sync and verify; nothing at all when nothing changed. Raises what
    the core raises (the caller says it)."""
    from torchenv.agent.base.options import AutoOptions
    from torchenv.agent.cli import fastpath_write
    from torchenv.agent.cli.lock_run import check_lock_path
    from torchenv.agent.cli.reqfiles import requirement_file_lines
    from torchenv.agent.pipeline import core as pipeline

    if lock is not None:
        check_lock_path(lock, "--lock")  # auto writes it: PEP 751's names, as `lock -o`

    reqs = (*(requirements or ()), *requirement_file_lines(requirement_file or ()))
    pending = fastpath_write.begin(__file__)  # the console script's no-op stamp
    settings = settings_from(
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
        echo("\n".join(auto_lines(result)))
    if pending is not None and not requirement_file:  # -r files are inputs it cannot see
        pending.finish(
            result, settings=settings, requirements=reqs, lock=lock,
            live=source.devices_here, as_json=as_json,
            render=lambda r: "\n".join(auto_lines(r)) + "\n",
        )  # fmt: skip


def run_sync(
    *,
    lock: Path,
    prefix: str | None,
    replay: Path | None,
    host_report: Path | None,
    python: str | None,
    python_version: str | None,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Build the environment from a lock (hash-checked, no resolution) and switch to it.
    Raises what the core raises (the caller says it)."""
    from torchenv.agent.base.options import ProbeOptions
    from torchenv.agent.pipeline import commands

    settings = settings_from(prefix=prefix)
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
    echo(f"switched {result.prefix} to {result.env_id} ({result.installer})")
    if result.adopted:
        echo(f"your previous environment was kept at {result.adopted}")
    if result.verify is not None:
        echo("\n".join(verify_lines(result.verify)))
    for note in result.notes:
        echo(f"note: {note}")
