"""`torchenv lock`: write a pylock.toml for exactly one target, or --check an existing one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchenv.agent import cmd_hostopts as opts
from torchenv.agent.cmdutil import JSON_OPTION, emit_json, guarded

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from torchenv.agent.lock import Difference
    from torchenv.agent.pylock import PyLock
    from torchenv.agent.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)


def lock_command(  # noqa: PLR0917 - typer maps parameters to options
    requirements: list[str] | None = typer.Argument(
        None, metavar="[REQUIREMENT]...", help="e.g. 'torch>=2.6' torchvision numpy."
    ),
    requirement_file: list[Path] | None = typer.Option(
        None, "-r", "--requirement", metavar="FILE", help="Read requirements from FILE."
    ),
    output: Path = typer.Option(Path("pylock.toml"), "-o", "--output", help="The lock to write."),
    resolver: str | None = typer.Option(None, "--resolver", help="auto, uv or pip."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Only say whether the lock at -o still fits the host (exit 1 if not).",
    ),
    as_json: bool = JSON_OPTION,
    replay: Path | None = opts.REPLAY,
    host_report: Path | None = opts.HOST_REPORT,
    os_name: str | None = opts.OS,
    arch: str | None = opts.ARCH,
    python: str | None = opts.PYTHON,
    driver: str | None = opts.DRIVER,
    gpu: list[str] | None = opts.GPU,
    rocm_gfx: list[str] | None = opts.ROCM_GFX,
    xpu: bool = opts.XPU,
    macos: str | None = opts.MACOS,
    channel: str | None = opts.CHANNEL,
    backend: str | None = opts.BACKEND,
) -> None:
    """Lock the torch family and the rest for exactly this host (or the one described)."""
    host_options = opts.HostOptions.from_cli(
        replay=replay, host_report=host_report, os=os_name, arch=arch, python=python,
        driver=driver, gpu=gpu, rocm_gfx=rocm_gfx, xpu=xpu, macos=macos,
    )  # fmt: skip

    def body() -> None:
        from torchenv.agent.settings import load_settings

        settings = load_settings({"channel": channel, "backend": backend, "resolver": resolver})
        host = host_options.load(settings)
        if check:
            _check(output, host, as_json)
            return
        reqs = gather_requirements(requirements or (), requirement_file or (), Path.cwd())
        lock = run_lock(reqs, host, settings, as_json)
        from torchenv.agent.pylock import write_pylock

        write_pylock(output, lock)
        if as_json:
            emit_json(lock_summary(lock, output))
        else:
            typer.echo(summary_text(lock, output))

    guarded(as_json, body)


def gather_requirements(given: Any, files: Any, cwd: Path) -> tuple[Requirement, ...]:
    """Command-line requirements and -r files; else the project's dependencies; else the default."""
    from torchenv.agent.errors import ConfigError
    from torchenv.agent.lock import DEFAULT_REQUIREMENTS, parse_requirements
    from torchenv.agent.settings import find_pyproject, read_toml

    found = list(parse_requirements(given))
    for path in files:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="pass an existing requirements file with -r",
            ) from exc
        found += parse_requirements(lines, source=str(path))
    if found:
        return tuple(found)
    pyproject = find_pyproject(cwd)
    if pyproject is not None:
        deps = read_toml(pyproject).get("project", {}).get("dependencies", [])
        if deps:
            return parse_requirements(deps, source=str(pyproject))
    return parse_requirements(DEFAULT_REQUIREMENTS)


def run_lock(reqs: tuple[Requirement, ...], host: Any, settings: Settings, as_json: bool) -> PyLock:
    from packaging.utils import canonicalize_name

    from torchenv.agent.cmd_env import make_reporter
    from torchenv.agent.index import IndexClient
    from torchenv.agent.lock import FAMILY, lock_for
    from torchenv.agent.resolvers import choose_resolver
    from torchenv.agent.selection import report_selection, run_selection

    family = tuple(str(r) for r in reqs if canonicalize_name(r.name) in FAMILY) or ("torch",)
    reporter = make_reporter(as_json)
    cache = Path(settings.get_value("cache-dir"))
    with IndexClient(cache_dir=cache, reporter=reporter) as client:
        selection = run_selection(host, family, settings, client=client)
        report_selection(selection, reporter)
        return lock_for(
            reqs, host, selection, settings, resolver=choose_resolver(
                settings.get_value("resolver"), reporter), client=client, reporter=reporter,
        )  # fmt: skip


def _check(output: Path, host: Any, as_json: bool) -> None:
    from torchenv.agent.lock import check_lock
    from torchenv.agent.pylock import read_pylock

    lock = read_pylock(output)
    diffs = check_lock(lock, host)
    if as_json:
        emit_json(
            {
                "path": str(output),
                "matches": not diffs,
                "differences": [_diff_json(d) for d in diffs],
            }
        )
    elif diffs:
        typer.echo(f"{output} was made for another target:")
        for d in diffs:
            typer.echo(f"  {d.fact}: locked {d.locked!r}, host {d.host!r}")
        typer.echo("Run `torchenv lock` again to lock for this host.")
    else:
        typer.echo(f"{output} matches this host ({lock.tool_torchenv.get('fingerprint')}).")
    if diffs:
        raise typer.Exit(1)


def _diff_json(d: Difference) -> dict[str, Any]:
    return {"fact": d.fact, "locked": d.locked, "host": d.host}


def lock_summary(lock: PyLock, output: Path) -> dict[str, Any]:
    return {
        "path": str(output),
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "index": p.index,
                "url": p.wheel.url,
                "size": p.wheel.size,
                "sha256": p.wheel.sha256,
            }
            for p in lock.packages
        ],
        "tool": dict(lock.tool_torchenv),
    }


def summary_text(lock: PyLock, output: Path) -> str:
    tool = lock.tool_torchenv
    torch = lock.package("torch")
    size = sum(p.wheel.size or 0 for p in lock.packages)
    return (
        f"Locked {len(lock.packages)} packages ({size / 1e6:.1f} MB) into {output}: "
        f"torch {torch.version if torch else '?'} ({tool.get('backend')}, {tool.get('channel')}) "
        f"for Python {tool.get('python')}, resolved with {tool.get('resolver')}."
        + "".join(f"\n  skipped: {line}" for line in tool.get("skipped", ()))
    )
