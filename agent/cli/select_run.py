"""`torchenv select`'s work and texts, without typer: the typer command and the plain one
(select_plain.py) both call `run`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchenv.agent.cli.outcome import echo, emit_json, json_text

if TYPE_CHECKING:
    from pathlib import Path

    from torchenv.backends.select import Selection


def run(
    *,
    requirements: list[str] | None,
    as_json: bool,
    explain: bool,
    replay: Path | None,
    host_report: Path | None,
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
    offline: bool,
    refresh: bool,
) -> None:
    """Choose the torch release and backend for the host the options name and print it;
    raises what the core raises (the caller says it)."""
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
        echo(explain_text(result))
    else:
        echo(summary_text(result))
    if pending is not None:
        pending.finish_select(
            json_text(result.to_json()) if as_json
            else (explain_text(result) if explain else summary_text(result)) + "\n",
            settings=settings, host_given=replay is not None or host_report is not None,
            offline=offline,
        )  # fmt: skip


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
