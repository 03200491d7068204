"""One core function per user command, over typed inputs and ports; selection against the index."""
