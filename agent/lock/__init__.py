"""Locking: the torch family from the PyTorch index, the rest through a resolver, pylock.toml."""
