"""`torchenv lock`'s work and texts, without typer: the typer command (lock.py) calls `run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchenv.agent.cli import hostflags
from torchenv.agent.cli.outcome import echo, emit_json, json_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from packaging.requirements import Requirement

    from torchenv.agent.base.options import ProbeOptions
    from torchenv.agent.fleet.classes import NamedHost
    from torchenv.agent.fleet.publish import Publication
    from torchenv.agent.host.source import HostSource
    from torchenv.agent.lock.check import Difference
    from torchenv.agent.lock.pylock import PyLock
    from torchenv.agent.pipeline.locking import LockCheck


DEFAULT_OUTPUT = "pylock.toml"


def run(
    *,
    requirements: list[str] | None,
    requirement_file: list[Path] | None,
    output: Path | None,
    publish: Path | None,
    resolver: str | None,
    check: bool,
    refresh: bool,
    as_json: bool,
    replay: list[Path] | None,
    host_report: list[Path] | None,
    os_name: str | None,
    arch: str | None,
    python: str | None,
    python_version: str | None,
    python_platform: str | None,
    driver: str | None,
    gpu: list[str] | None,
    rocm_gfx: list[str] | None,
    xpu: bool,
    macos: str | None,
    channel: str | None,
    backend: str | None,
    index_url: str | None,
    torch_index_url: str | None,
) -> int:
    """Lock the torch family and the rest for the host the options name (with `publish`, one
    lock per hardware class of the hosts given); raises what the core raises (the caller says
    it). The exit code: 1 where --check finds the lock unfit or a class failed (JSON)."""
    replays, reports = list(replay or ()), list(host_report or ())

    def options(**source: Path | None) -> HostSource:
        return hostflags.host_source(
            **source, os=os_name, arch=arch, python=python, driver=driver, gpu=gpu,
            rocm_gfx=rocm_gfx, xpu=xpu, macos=macos, python_version=python_version,
            python_platform=python_platform,
        )  # fmt: skip

    from torchenv.agent.base.options import LockOptions, ProbeOptions
    from torchenv.agent.base.settings import load_settings
    from torchenv.agent.cli import fastpath_write

    one = publish is None and not check and not replays and not reports
    pending = fastpath_write.begin(__file__) if one else None  # the console script's stamp
    settings = load_settings({
        "channel": channel, "backend": backend, "resolver": resolver,
        "index-url": index_url, "torch-index-url": torch_index_url,
        "index-max-age": "0" if refresh else None,
    })  # fmt: skip
    lock_options = LockOptions.from_settings(settings)
    probe = ProbeOptions.from_settings(settings)
    if publish is None and not check and len(replays) + len(reports) <= 1:
        check_lock_path(output or Path(DEFAULT_OUTPUT))  # before uv, the host or the index
    from torchenv.agent.lock.resolvers import uvwarm

    # uv's look at this interpreter runs while the host and the index are read (none: --check)
    with uvwarm.looking(None if check else lock_options):
        from torchenv.agent.cli.console import make_reporter
        from torchenv.agent.pipeline import locking

        if publish is not None or len(replays) + len(reports) > 1:
            _refuse_with_publish(publish, output, check)
            assert publish is not None
            reqs = gather_requirements(requirements or (), requirement_file or (), Path.cwd())
            hosts = fleet_hosts(replays, reports, options, probe)
            done = locking.publish_locks(
                publish, reqs, hosts, lock_options, reporter=make_reporter(as_json)
            )
            return render_publication(done, as_json)
        host_options = options(
            replay=replays[0] if replays else None, host_report=reports[0] if reports else None
        )
        if pending is not None:  # the inputs before the lock reads them (one saved later: not kept)
            pending.hold(locking.kept_inputs(lock_options, requirement_file or (), python))
        host = host_options.load(probe)
        target = output or Path(DEFAULT_OUTPUT)
        if check:
            return render_check(locking.check_lock_file(target, host), as_json)
        reqs = gather_requirements(requirements or (), requirement_file or (), Path.cwd())
        reporter = make_reporter(as_json)
        with locking.index_client(lock_options, reporter) as client:
            lock = locking.lock_file(reqs, host, lock_options, target, reporter=reporter,
                                     client=client)  # fmt: skip
        answer = (json_text(lock_summary(lock, target)) if as_json
                  else summary_text(lock, target) + "\n")  # fmt: skip
        sys.stdout.write(answer)
        sys.stdout.flush()
        if pending is not None:  # the same lock asked again answers at once while it holds
            try:  # a uv cache entry another lock renames meanwhile: keep nothing, exit 0
                expires = locking.young_until(client, lock_options, lock)
                pending.hold(locking.written_inputs(lock_options, target))
                expires = expires if locking.wrote(target, lock) else None
            except (OSError, ValueError):
                expires = None
            pending.finish_kept(
                answer if expires is not None else None,
                expires=expires,
                extra=[("stat", f) for f in fastpath_write.cli_files(fastpath_write.LOCK_CLI)],
            )
        return 0


def check_lock_path(path: Path, option: str = "-o") -> None:
    """Where a lock will be written, before any work: PEP 751's names, as uv insists
    (pylock.toml or pylock.NAME.toml, NAME without dots), in a directory that is there, and
    not a directory itself. UsageError otherwise."""
    import re

    from torchenv.agent.base.errors import UsageError

    if path.name != DEFAULT_OUTPUT and not re.fullmatch(r"pylock\.[^.]+\.toml", path.name):
        raise UsageError(
            f"{option} {path}: a PEP 751 lock is named pylock.toml or pylock.NAME.toml, "
            f"not {path.name!r}",
            hint=f"write it as {path.with_name(DEFAULT_OUTPUT)} or e.g. "
            f"{path.with_name('pylock.gpu.toml')}; installers find locks by that name",
        )
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a directory, not a lock file",
            hint=f"name the file: {option} {path / DEFAULT_OUTPUT}",
        )
    if not path.absolute().parent.is_dir():
        raise UsageError(
            f"{option} {path}: there is no directory {path.parent}",
            hint="create it first, or name a lock file in a directory that is there",
        )


# ---------------------------------------------------------------- several hosts (--publish)


def _refuse_with_publish(publish: Path | None, output: Path | None, check: bool) -> None:
    from torchenv.agent.base.errors import ConfigError

    if publish is None:
        raise ConfigError(
            "several hosts were given, but one lock file (-o) holds one target",
            hint="pass --publish DIR to write one lock per hardware class of the hosts into "
            "DIR, with an index for `lock-source`",
        )
    if output is not None or check:
        raise ConfigError(
            f"--publish writes one lock per class into a directory; {'-o' if output else '--check'}"
            " works on one lock file",
            hint="give --publish DIR without -o and --check (a node checks its lock itself)",
        )


def fleet_hosts(
    replays: list[Path],
    reports: list[Path],
    options: Callable[..., HostSource],
    probe: ProbeOptions,
) -> list[NamedHost]:
    """Every host given: recordings, report files, and every `*.json` in a report directory."""
    from torchenv.agent.base.errors import HostError
    from torchenv.agent.fleet.classes import NamedHost

    files = []
    for path in reports:
        found = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not found:
            raise HostError(
                f"{path} holds no host reports (*.json)",
                hint="write one per node with `torchenv probe --json > DIR/NODE.json`",
            )
        files += found
    if not replays and not files:
        raise HostError(
            "--publish needs the hosts to lock for",
            hint="give each node's report (--host-report FILE or DIR, from `torchenv probe "
            "--json`) or recording (--replay DIR), as often as there are nodes",
        )
    hosts = [NamedHost(str(p), options(replay=p).load(probe)) for p in replays]
    return hosts + [NamedHost(str(p), options(host_report=p).load(probe)) for p in files]


def render_publication(done: Publication, as_json: bool) -> int:
    """The publication as text or JSON; the exit code (a class failed: its error, raised or,
    with JSON, its code)."""
    from torchenv.agent.fleet import publish as fleet

    if as_json:
        emit_json(done.to_json())
    else:
        echo("\n".join(publication_lines(done)))
    if done.failed:
        error = fleet.publish_error(done)
        if as_json:
            return error.exit_code
        raise error
    return 0


def publication_lines(done: Publication) -> list[str]:
    locked = len(done.results) - len(done.failed)
    hosts = sum(len(r.host_class.hosts) for r in done.results)
    lines = [
        f"{_count(hosts, 'host')} in {_count(len(done.results), 'class')}: {locked} locked "
        f"({_count(len(done.results), 'resolution')}), index {done.directory / 'index.json'}"
    ]
    for result in done.results:
        fp = result.host_class.fingerprint
        entry = done.index.classes.get(fp)
        count = _count(len(result.host_class.hosts), "host")
        if result.error is None and entry is not None:
            lines.append(
                f"  {fp}  {entry.backend or '?':8} torch {entry.torch or '?':16} {count:10} "
                f"{done.directory / entry.lock}"
            )
            continue
        kept = " (the lock published before stays)" if entry is not None else ""
        message = result.error.message if result.error else "?"
        lines.append(f"  {fp}  FAILED{kept}: {message}")
    if done.removed:
        lines.append(
            f"removed {_count(len(done.removed), 'stale entry')}: {', '.join(done.removed)}"
        )
    return lines


def _count(n: int, thing: str) -> str:
    plural = {"class": "classes", "stale entry": "stale entries"}.get(thing, thing + "s")
    return f"{n} {thing if n == 1 else plural}"


def gather_requirements(given: Any, files: Any, cwd: Path) -> tuple[Requirement, ...]:
    """Command-line requirements and -r files; else the project's dependencies; else the default."""
    from torchenv.agent.base.settings import find_pyproject, project_dependencies, read_toml
    from torchenv.agent.cli.reqfiles import read_requirements_file
    from torchenv.agent.lock.inputs import DEFAULT_REQUIREMENTS, parse_requirements

    found = list(parse_requirements(given))
    for path in files:
        found += parse_requirements(read_requirements_file(Path(path)), source=str(path))
    if found:
        return tuple(found)
    pyproject = find_pyproject(cwd)
    if pyproject is not None:
        deps = project_dependencies(pyproject, read_toml(pyproject))
        if deps:
            return parse_requirements(deps, source=str(pyproject))
    return parse_requirements(DEFAULT_REQUIREMENTS)


def render_check(checked: LockCheck, as_json: bool) -> int:
    """`lock --check`'s answer as text or JSON; the exit code: 1 when the lock does not fit."""
    output, lock, diffs = checked.path, checked.lock, checked.differences
    if as_json:
        emit_json(
            {
                "path": str(output),
                "matches": not diffs,
                "differences": [_diff_json(d) for d in diffs],
            }
        )
    elif diffs:
        echo(f"{output} was made for another target:")
        for d in diffs:
            echo(f"  {d.fact}: locked {d.locked!r}, host {d.host!r}")
        echo("Run `torchenv lock` again to lock for this host.")
    else:
        echo(f"{output} matches this host ({lock.tool_torchenv.get('fingerprint')}).")
    return 1 if diffs else 0


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
