"""Running the web app: ``outreach serve`` calls ``serve``."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import uvicorn

from outreach.web.app import create_app

if TYPE_CHECKING:
    from outreach.bootstrap import Services


def serve(services: Services, *, host: str, port: int, access_log: bool = False) -> None:
    """Serve the app on ``host:port`` until interrupted (uvicorn, one process).

    uvicorn picks uvloop and httptools (declared dependencies) when they are installed. The
    objects built at start-up are frozen out of the garbage collector: full collections over
    them cost tens of milliseconds each under load, which showed as the click endpoint's p99.
    """
    app = create_app(services)
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        server_header=False,
        log_level="info",
        access_log=access_log,
    )
