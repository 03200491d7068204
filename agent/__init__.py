"""torchenv's composition layer: CLI, pipeline, index client, lock, venv, verify, daemon."""

__version__ = "0.1.0"
