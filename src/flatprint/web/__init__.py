"""flatprint.web: the web explorer (neuPrintExplorer's everyday pages), a thin layer over flatprint.query.

``register(app)`` adds the pages under ``/explorer/`` to the server's FastAPI app (the server's
``create_app`` calls it); every page calls the query library through the server's state
(``dataset_for(request, name)``, which checks the caller's token grants, and ``state.run``) and renders
Jinja2 templates shipped in this package. plotly.js comes from the plotly Python package, so nothing
is loaded from the network.
"""

from __future__ import annotations

import threading

__all__ = ["register", "router", "warm"]


def __getattr__(name):
    if name == "router":
        from flatprint.web.views import router  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted

        return router
    raise AttributeError(name)


def register(app) -> None:
    """Mount the explorer on a flatprint server app (idempotent)."""
    from flatprint.web.diff import router as diff_router  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted
    from flatprint.web.indirect import router as indirect_router  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted
    from flatprint.web.neuron import router as neuron_router  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted
    from flatprint.web.views import router  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted

    if getattr(app.state, "flatprint_explorer", False):
        return
    app.include_router(router)
    app.include_router(neuron_router)
    app.include_router(indirect_router)
    app.include_router(diff_router)
    app.state.flatprint_explorer = True


def warm(app, background: bool = True):
    """Precompute the autocomplete index, home heatmap and summaries of every dataset the app serves
    (seconds at full scale), in a daemon thread by default. Returns the thread (or None)."""

    from flatprint.web.views import warm as _warm  # noqa: PLC0415 - the pages import the server's request layer: loaded when mounted

    stores = list(app.state.flatprint.datasets.values())
    if not background:
        _warm(stores)
        return None
    thread = threading.Thread(target=_warm, args=(stores,), name="flatprint-web-warm", daemon=True)
    thread.start()
    return thread
