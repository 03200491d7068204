"""One exception root with structured fields; only the CLI and the daemon turn it into text."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

# One scheme for every command, the daemon and the entrypoint (README "Exit codes").
EXIT_OK = 0
EXIT_UNSATISFIABLE = 1  # the user's input or the host cannot be satisfied; the message says why
EXIT_USAGE = 2  # the command line is wrong (click's own code for usage errors)
EXIT_UNEXPECTED = 3  # a failure torchenv did not anticipate: a bug to report
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the request, the input or the host cannot be satisfied (the message "
    "says what to do); 2 usage error; 3 unexpected internal error (please report it); "
    "130 interrupted (Ctrl-C)."
)


class TorchenvError(Exception):
    """Root of every error torchenv expects.

    `message` says what went wrong, `hint` what to do next; `details` carries the
    structured facts (rendered by `--json`), `exit_code` is 1 for expected failures.
    """

    exit_code = EXIT_UNSATISFIABLE
    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: Mapping[str, Any] | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = dict(details or {})
        if exit_code is not None:  # e.g. a child's unexpected failure passed on as such
            self.exit_code = exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.kind,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
            "exit_code": self.exit_code,
        }

    def paragraph(self) -> str:
        """The one paragraph the CLI prints."""
        text = self.message.rstrip(".") + "."
        if self.hint:
            text += " " + self.hint.rstrip(".") + "."
        return text


class ConfigError(TorchenvError):
    kind = "config"


class UsageError(TorchenvError):
    """The command line is wrong in a way click cannot see (options that exclude each other)."""

    exit_code = EXIT_USAGE
    kind = "usage"


class HostError(TorchenvError):
    """The host (or a recorded host) cannot be read or described as asked."""

    kind = "host"


class SelectionError(TorchenvError):
    """No torch build satisfies the request on this host."""

    kind = "selection"


class IndexError_(TorchenvError):  # avoids shadowing the builtin IndexError
    """A package index failed or answered something unusable."""

    kind = "index"


class IntegrityError(IndexError_):
    """A download did not match its hash or size."""

    kind = "integrity"


class ResolutionError(TorchenvError):
    kind = "resolution"


class LockFileError(TorchenvError):
    """A pylock.toml is unreadable, corrupt, or made for another target."""

    kind = "lock"


class EnvironmentBuildError(TorchenvError):
    """Building or switching a virtual environment failed."""

    kind = "environment"


class VerifyError(TorchenvError):
    kind = "verify"


class BusyError(TorchenvError):
    """Another torchenv process holds the prefix."""

    kind = "busy"


class UnexpectedError(TorchenvError):
    """A failure torchenv did not anticipate (exit code 3)."""

    exit_code = EXIT_UNEXPECTED
    kind = "unexpected"


def os_error(action: str, path: Path | str, exc: OSError) -> EnvironmentBuildError:
    """An OSError as an EnvironmentBuildError whose hint fits the errno."""
    hints = {
        errno.ENOSPC: "free disk space (the old environment is untouched) and run again",
        errno.EDQUOT: "free disk space within your quota and run again",
        errno.EACCES: "choose a prefix you may write (--prefix DIR) or fix the permissions",
        errno.EPERM: "choose a prefix you may write (--prefix DIR) or fix the permissions",
        errno.EROFS: "the file system is read-only; choose another --prefix",
    }
    return EnvironmentBuildError(
        f"cannot {action} {path}: {exc.strerror or exc}",
        hint=hints.get(exc.errno or 0, "check the path and run again"),
        details={"path": str(path), "errno": exc.errno},
    )
