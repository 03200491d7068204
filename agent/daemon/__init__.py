"""The agent: a reconcile loop, a status socket and the systemd protocol, without the pipeline."""
