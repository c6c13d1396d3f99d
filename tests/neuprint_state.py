"""neuprint-python's process-wide state, released between test modules.

neuprint-python keeps a default Client and a registry of every live Client; it picks a default only
while the live ones are equivalent (same server, dataset, token). Its ``Client`` methods ``meta``,
``primary_rois``, ``all_rois``, ``fetch_neuron_keys`` ... are ``functools.lru_cache``'d on the class,
so the cache holds every Client (and every copy it makes of one: fetch_simple_connections deep-copies
its NeuronCriteria, client included) that ever called them, for the life of the process. A Client of
an earlier module's server thus stays live, and the next module's first such copy makes neuprint
clear its default ("Currently more than one Client exists"): the later module fails or passes
depending on which modules ran before it.
"""

from __future__ import annotations

import gc
import sys


def release_neuprint_clients() -> None:
    """Forget every neuprint Client: empty the method caches that hold them, clear the default (and
    its per-thread copies), and collect the Clients caught in reference cycles."""
    client_module = sys.modules.get("neuprint.client")
    if client_module is None:  # neuprint never imported: no Client can exist
        return
    for attribute in vars(client_module.Client).values():
        function = attribute.fget if isinstance(attribute, property) else attribute
        if hasattr(function, "cache_clear"):
            function.cache_clear()
    client_module.clear_default_client()
    gc.collect()
