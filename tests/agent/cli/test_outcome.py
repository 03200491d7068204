"""The typer-free output layer: text written as click.echo writes it, errors said as the
commands say them."""

from __future__ import annotations

import io
import json
import sys

import pytest
import typer

from torchenv.agent.base.errors import HostError
from torchenv.agent.cli import outcome

TEXT = "torch 2.9 cu130 — ok ✓"


def written(stream: io.TextIOWrapper) -> bytes:
    stream.flush()
    return stream.buffer.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("err", [False, True], ids=["stdout", "stderr"])
@pytest.mark.parametrize("encoding", ["ascii", "utf-8", "latin-1"])
@pytest.mark.parametrize(
    "text", [TEXT, "plain", "\x1b[31mred\x1b[0m"], ids=["utf8", "ascii", "ansi"]
)
def test_echo_writes_the_bytes_click_echo_writes(
    monkeypatch: pytest.MonkeyPatch, err: bool, encoding: str, text: str
) -> None:
    name = "stderr" if err else "stdout"
    streams = []
    for echo in (outcome.echo, typer.echo):
        streams.append(io.TextIOWrapper(io.BytesIO(), encoding=encoding))
        monkeypatch.setattr(sys, name, streams[-1])
        if encoding == "latin-1" and text == TEXT:  # a stream that cannot say it: both fail
            with pytest.raises(UnicodeEncodeError):
                echo(text, err=err)
        else:
            echo(text, err=err)
    ours, clicks = streams
    assert written(ours) == written(clicks)
    assert written(ours).endswith(b"\n") or (encoding, text) == ("latin-1", TEXT)


def test_an_ascii_stream_gets_utf8_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    outcome.echo(TEXT)
    assert written(stream) == (TEXT + "\n").encode()


def test_ansi_codes_stay_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    outcome.echo("\x1b[1mbold\x1b[0m")
    monkeypatch.setattr(stream, "isatty", lambda: True)
    outcome.echo("\x1b[1mbold\x1b[0m")
    assert stream.getvalue() == "bold\n\x1b[1mbold\x1b[0m\n"


@pytest.mark.parametrize("err", [False, True], ids=["stdout", "stderr"])
def test_without_a_stream_nothing_is_written_and_nothing_fails(
    monkeypatch: pytest.MonkeyPatch, err: bool
) -> None:
    monkeypatch.setattr(sys, "stderr" if err else "stdout", None)
    outcome.echo(TEXT, err=err)
    typer.echo(TEXT, err=err)  # as click does


def test_an_expected_error_is_one_paragraph_or_json_and_its_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = HostError("no recorded host at x", hint="pass a directory")
    assert outcome.failure(error, False) == 1
    assert capsys.readouterr().err == "torchenv: no recorded host at x. pass a directory.\n"
    assert outcome.failure(error, True) == 1
    said = json.loads(capsys.readouterr().out)
    assert (said["error"], said["hint"], said["exit_code"]) == ("host", "pass a directory", 1)


def test_an_unexpected_error_is_exit_3_with_the_debug_hint_and_raised_when_debugging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHENV_DEBUG", raising=False)
    assert outcome.failure(RuntimeError("boom"), False) == 3
    err = capsys.readouterr().err
    assert err.startswith("torchenv: unexpected RuntimeError: boom.") and "TORCHENV_DEBUG=1" in err
    assert outcome.failure(KeyboardInterrupt(), True) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setenv("TORCHENV_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        outcome.failure(RuntimeError("boom"), False)
