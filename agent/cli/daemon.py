"""Commands for keeping environments right: `agent`, `status` (its client) and `entrypoint`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from torchenv.agent.cli import hostopts
from torchenv.agent.cli.guard import JSON_OPTION, guarded, with_verbosity
from torchenv.agent.cli.outcome import emit_json

DEFAULT_SOCKET = "/run/torchenv/agent.sock"  # for --help; daemon.config.default_socket decides


def _agent(config: Path | None, once: bool, wait_driver: float, mark_done: Path | None) -> int:
    from torchenv.agent.daemon.config import load_config
    from torchenv.agent.daemon.loop import run_agent

    return run_agent(load_config(config), once=once, wait_driver=wait_driver, mark_done=mark_done)


def _socket_path(socket: Path | None) -> Path:
    if socket is not None:
        return socket
    if os.environ.get("TORCHENV_AGENT_SOCKET"):
        return Path(os.environ["TORCHENV_AGENT_SOCKET"])
    from torchenv.agent.daemon.config import default_socket

    return default_socket(os.environ)


def _status(socket: Path, as_json: bool, reconcile: bool, check: bool) -> int:
    from torchenv.agent.daemon.client import (
        AgentUnreachable,
        failed_outputs,
        render_status,
        request,
    )

    if reconcile:
        code, answer = request(socket, "POST", "/v1/reconcile", body={})
        if code != 202:
            raise AgentUnreachable(
                f"the agent refused the reconcile request ({code}): {answer}",
                hint="see `journalctl -u torchenv-agent`",
            )
    code, answer = request(socket, "GET", "/v1/status")
    if code != 200 or not isinstance(answer, dict):
        raise AgentUnreachable(
            f"the agent answered {code}: {answer}", hint="see `journalctl -u torchenv-agent`"
        )
    if as_json:
        emit_json(answer)
    else:
        typer.echo(render_status(answer))
    all_active = all(e.get("state") == "active" for e in answer.get("environments", []))
    healthy = all_active and not failed_outputs(answer)
    return 1 if check and not healthy else 0


def register(app: typer.Typer) -> None:
    @app.command("agent")
    @with_verbosity
    def agent(
        config: Path | None = typer.Option(
            None, "--config", help="agent configuration (default /etc/torchenv/config.toml)"
        ),
        once: bool = typer.Option(
            False, "--once", help="reconcile once and exit: 0 when every environment is active"
        ),
        wait_driver: float = typer.Option(
            0.0,
            "--wait-driver",
            metavar="SECONDS",
            help="first boot: wait this long for the NVIDIA driver when a GPU is present",
        ),
        mark_done: Path | None = typer.Option(
            None, "--mark-done", help="with --once: write this file when everything is active"
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Keep the configured environments right for this host (the daemon)."""
        raise typer.Exit(guarded(as_json, lambda: _agent(config, once, wait_driver, mark_done)))

    @app.command("status")
    @with_verbosity
    def status(
        socket: Path | None = typer.Option(
            None, "--socket", help=f"the agent's socket (default {DEFAULT_SOCKET})"
        ),
        reconcile: bool = typer.Option(False, "--reconcile", help="ask for a reconcile first"),
        check: bool = typer.Option(
            False,
            "--check",
            help="exit 1 unless every environment is active and every output file is written",
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Show what the agent keeps, and how it went."""
        path = _socket_path(socket)
        raise typer.Exit(guarded(as_json, lambda: _status(path, as_json, reconcile, check)))

    @app.command(
        "entrypoint",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )
    @with_verbosity
    def entrypoint(
        command: list[str] = typer.Argument(
            None, metavar="-- CMD ...", help="the command to run in the environment"
        ),
        *,
        prefix: str | None = typer.Option(None, "--prefix", help="the environment to ensure"),
        requirement: list[Path] = typer.Option(
            [], "--requirement", "-r", metavar="FILE", help="read requirements from FILE"
        ),
        lock_source: str | None = typer.Option(
            None,
            "--lock-source",
            metavar="DIR|URL",
            help="take the lock published for this host's class from there (docs/fleet.md)",
        ),
        index_url: str | None = hostopts.INDEX_URL,
        torch_index_url: str | None = hostopts.TORCH_INDEX_URL,
        auto_args: str | None = typer.Option(None, "--auto-args", hidden=True),
        provisioner: str | None = typer.Option(None, "--provisioner", hidden=True),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Container entry point: ensure the environment for this host, then exec CMD in it."""
        from torchenv.agent.cli.entrypoint import provision_then_exec

        guarded(
            as_json,
            lambda: provision_then_exec(
                prefix,
                list(requirement),
                auto_args,
                provisioner,
                list(command or []),
                lock_source,
                {"--index-url": index_url, "--torch-index-url": torch_index_url},
            ),
        )
