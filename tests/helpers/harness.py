"""The agent's request handling in process: bytes in, the HTTP answer out (no socket, no loop).

`answer(payload)` feeds the bytes to the real `serve_connection` and the real `Daemon.handle`,
exactly as the agent's server does for one connection, and returns what it wrote back.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from torchenv.agent.daemon.config import parse_config
from torchenv.agent.daemon.http import MAX_HEAD, serve_connection
from torchenv.agent.daemon.log import JournalReporter
from torchenv.agent.daemon.loop import Daemon


class _Writer:
    """What serve_connection needs of an asyncio.StreamWriter; keeps the bytes written."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


class Harness:
    def __init__(self, tmp: Path) -> None:
        config = parse_config(
            {
                "agent": {"state-dir": str(tmp / "state"), "socket": str(tmp / "agent.sock")},
                "environment": [{"name": "default", "prefix": str(tmp / "env")}],
            },
            where="the test",
            env={},
        )
        self.log = io.StringIO()
        self.agent = Daemon(config, reporter=JournalReporter(self.log, journal=False))
        self.errors: list[str] = []

    def answer(self, payload: bytes) -> bytes:
        async def once() -> bytes:
            reader = asyncio.StreamReader(limit=MAX_HEAD)
            reader.feed_data(payload)
            reader.feed_eof()
            writer = _Writer()
            await serve_connection(
                reader, writer, self.agent.handle, timeout=1.0,  # type: ignore[arg-type]
                on_error=self.errors.append,
            )  # fmt: skip
            return writer.data

        return asyncio.run(once())


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])
