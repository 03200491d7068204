"""Which host a command works for: this machine, a recording, a report file, or flags."""
