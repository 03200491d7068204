"""How the `torchenv` command is installed, by the platform the wheel is built on.

Linux: scripts/torchenv, a launcher that imports only sys before the no-op check (a console
script imports re first, half of Python's own start-up); pip and uv write the environment's
interpreter into its `#!python` line. Elsewhere the fast check does not run, and a
console-script entry point writes the command (torchenv.exe on Windows).

TORCHENV_BUILD_PLATFORM, read here only, builds for another platform's `sys.platform` (the
tests make a non-Linux sdist with it). An sdist carries scripts/torchenv wherever it is made
(MANIFEST.in): a Linux wheel built from it has the launcher.
"""

import os
import sys

from setuptools import setup

if os.environ.get("TORCHENV_BUILD_PLATFORM", sys.platform).startswith("linux"):
    setup(scripts=["scripts/torchenv"])
else:
    setup(entry_points={"console_scripts": ["torchenv = torchenv.agent.cli.entry:main"]})
