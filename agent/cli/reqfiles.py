"""`-r FILE`: requirements files read within bounds, for `lock`, `auto` and `entrypoint`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_requirements_file(path: Path) -> list[str]:
    """The lines of a `-r` file: UTF-8 text of at most MAX_REQUIREMENTS_FILE (ConfigError)."""
    from torchenv.agent.base.errors import ConfigError
    from torchenv.agent.base.fsutil import read_bounded
    from torchenv.agent.base.limits import MAX_REQUIREMENTS_FILE, TooLarge

    try:
        data = read_bounded(path, MAX_REQUIREMENTS_FILE, "requirements file")
        return data.decode("utf-8").splitlines()
    except FileNotFoundError as exc:
        raise _not_a_file(path) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="pass an existing requirements file with -r",
        ) from exc
    except TooLarge as exc:
        raise ConfigError(str(exc), hint="pass a requirements file with -r") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded)",
            hint="requirements files are UTF-8 text, one requirement a line; convert it "
            "(e.g. `iconv -f latin1 -t utf-8`) or pass the right file",
        ) from exc


def _not_a_file(path: Path) -> Exception:
    """-r names a file, as in pip and uv; a requirement given there instead is a usage error."""
    from packaging.requirements import InvalidRequirement, Requirement

    from torchenv.agent.base.errors import ConfigError, UsageError

    try:
        Requirement(str(path))
    except InvalidRequirement:
        return ConfigError(
            f"-r {path}: there is no such file", hint="pass an existing requirements file with -r"
        )
    return UsageError(
        f"-r {path}: there is no such file; -r names a requirements file, as in pip and uv, "
        "and this looks like a requirement",
        hint=f"write it into a file (`echo '{path}' > requirements.txt`, then -r "
        "requirements.txt), list it in pyproject.toml's dependencies, or give it as an "
        "argument where the command takes requirements (lock, auto)",
    )


def requirement_file_lines(paths: Any) -> list[str]:
    """The requirements of each -r file, as strings (comments and blank lines left out)."""
    from torchenv.agent.lock.inputs import parse_requirements

    return [
        str(r)
        for path in paths
        for r in parse_requirements(read_requirements_file(Path(path)), source=str(path))
    ]
