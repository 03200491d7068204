"""`torchenv lock`: typer's parsing; the work and the texts are lock_run.py's."""

from __future__ import annotations

from pathlib import Path

import typer

from torchenv.agent.cli import hostopts as opts
from torchenv.agent.cli import lock_run
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity

REPLAYS = typer.Option(
    None, "--replay", metavar="DIR", help="Lock for the host recorded in DIR (repeatable)."
)
HOST_REPORTS = typer.Option(
    None, "--host-report", metavar="FILE",
    help="Lock for the host in a `probe --json` file, or every *.json in a directory "
    "(repeatable).",
)  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("lock")(with_verbosity(lock_command))


def lock_command(  # noqa: PLR0917 - typer maps parameters to options
    requirements: list[str] | None = typer.Argument(
        None, metavar="[REQUIREMENT]...", help="e.g. 'torch>=2.6' torchvision numpy."
    ),
    requirement_file: list[Path] | None = typer.Option(
        None, "-r", "--requirement", metavar="FILE", help="Read requirements from FILE."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="The lock to write: pylock.toml or pylock.NAME.toml, as PEP 751 names locks "
        "(default pylock.toml).",
    ),
    publish: Path | None = typer.Option(
        None,
        "--publish",
        metavar="DIR",
        help="One lock per hardware class of the hosts given (--host-report, --replay: "
        "repeatable) into DIR, with DIR/index.json for `lock-source`.",
    ),
    resolver: str | None = typer.Option(None, "--resolver", help="auto, uv or pip."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Only say whether the lock at -o still fits the host (exit 1 if not).",
    ),
    refresh: bool = typer.Option(
        False, "--refresh", help="Read every index page again (ignore index-max-age)."
    ),
    as_json: bool = JSON_OPTION,
    replay: list[Path] | None = REPLAYS,
    host_report: list[Path] | None = HOST_REPORTS,
    os_name: str | None = opts.OS,
    arch: str | None = opts.ARCH,
    python: str | None = opts.PYTHON,
    python_version: str | None = opts.PYTHON_VERSION,
    python_platform: str | None = opts.PYTHON_PLATFORM,
    driver: str | None = opts.DRIVER,
    gpu: list[str] | None = opts.GPU,
    rocm_gfx: list[str] | None = opts.ROCM_GFX,
    xpu: bool = opts.XPU,
    macos: str | None = opts.MACOS,
    channel: str | None = opts.CHANNEL,
    backend: str | None = opts.BACKEND,
    index_url: str | None = opts.INDEX_URL,
    torch_index_url: str | None = opts.TORCH_INDEX_URL,
) -> None:
    """Lock the torch family and the rest for exactly this host (or the one described);
    with --publish, one lock per hardware class of the hosts given."""
    code = guarded(as_json, lambda: lock_run.run(
        requirements=requirements, requirement_file=requirement_file, output=output,
        publish=publish, resolver=resolver, check=check, refresh=refresh, as_json=as_json,
        replay=replay, host_report=host_report, os_name=os_name, arch=arch, python=python,
        python_version=python_version, python_platform=python_platform, driver=driver, gpu=gpu,
        rocm_gfx=rocm_gfx, xpu=xpu, macos=macos, channel=channel, backend=backend,
        index_url=index_url, torch_index_url=torch_index_url,
    ))  # fmt: skip
    if code:
        raise typer.Exit(code)
