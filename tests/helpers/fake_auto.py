"""A stand-in for `torchenv auto --json` at the agent's provisioner seam (loop tests only).

It derives the backend from the replayed host's driver version file, builds the new
environment beside the prefix and switches by renaming a symlink, like the real one.
A control file (FAKE_AUTO_CONTROL) makes it fail or hang.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _arg(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def backend_for(replay: Path | None) -> str:
    if replay is None:
        return "cpu"
    try:
        driver = (replay / "root/sys/module/nvidia/version").read_text().strip()
    except OSError:
        return "cpu"
    major = int(driver.split(".")[0])
    return "cu130" if major >= 580 else "cu128" if major >= 570 else "cu126"


def main(argv: list[str]) -> int:
    assert argv[0] == "auto", argv
    prefix = Path(_arg(argv, "--prefix") or ".venv")
    replay = Path(r) if (r := _arg(argv, "--replay")) else None
    control_path = os.environ.get("FAKE_AUTO_CONTROL")
    control = json.loads(Path(control_path).read_text()) if control_path else {}
    calls = Path(control_path).with_suffix(".calls") if control_path else None
    if calls is not None:
        with calls.open("a") as fh:
            fh.write(
                json.dumps(
                    {
                        "argv": argv,
                        "channel": os.environ.get("TORCHENV_CHANNEL"),
                        "lock_source": os.environ.get("TORCHENV_LOCK_SOURCE"),
                        "pid": os.getpid(),
                    }
                )
                + "\n"
            )
    if control.get("hang"):
        Path(control["hang"]).write_text(str(os.getpid()))
        time.sleep(3600)
    if control.get("fail"):
        print(
            json.dumps(
                {
                    "error": "selection",
                    "message": control["fail"],
                    "hint": "fake hint",
                    "exit_code": 1,
                }
            )
        )
        return 1
    backend = backend_for(replay)
    home = prefix.with_name(prefix.name + ".torchenv") / "envs"
    env_dir = home / f"env-{time.time_ns()}"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").symlink_to(sys.executable)
    (env_dir / "backend").write_text(backend)
    link = prefix.with_name(prefix.name + ".new")
    link.symlink_to(env_dir)
    os.replace(link, prefix)
    print(
        json.dumps(
            {"ok": True, "backend": backend, "torch": f"2.11.0+{backend}", "prefix": str(prefix)}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
