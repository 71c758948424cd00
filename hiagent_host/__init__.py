"""hiagent-host: run HiAgent plugin wheels in isolated child processes behind an HTTP API."""

__version__ = "0.1.0"
