"""Windows gets a console-script entry point (pip writes torchenv.exe); elsewhere the command is
scripts/torchenv, a launcher that imports nothing before the no-op check (pyproject.toml)."""

import sys

from setuptools import setup

WINDOWS = {"console_scripts": ["torchenv = torchenv.agent.cli.entry:main"]}
setup(entry_points=WINDOWS if sys.platform == "win32" else {})
