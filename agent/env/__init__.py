"""The managed environment: the prefix and its versions, syncing a lock into it, integrity."""
