"""`python -m torchenv.agent`: the `torchenv` CLI (the agent runs its provisions through it)."""

from __future__ import annotations

from torchenv.agent.cli.entry import main

if __name__ == "__main__":
    main()
