"""flatprint: a self-hosted, offline, neuPrint-compatible connectome platform."""

__version__ = "0.1.0"
