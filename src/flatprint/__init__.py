"""flatprint: a self-hosted, offline, neuPrint-compatible connectome platform.

``from flatprint import Client, NeuronCriteria as NC, SynapseCriteria as SC`` gives neuprint-python's
query API over a local store (see README.md).
"""

__version__ = "0.1.0"

from flatprint.query import *  # noqa: E402,F401,F403
from flatprint.query import __all__  # noqa: E402,F401
