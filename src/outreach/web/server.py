"""Running the web app: ``outreach serve`` calls ``serve``."""

from __future__ import annotations

import gc
import json
import os
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from outreach.web.app import create_app

if TYPE_CHECKING:
    from outreach.bootstrap import Services


def _frozen(app: FastAPI) -> FastAPI:
    """The objects built at start-up, frozen out of the garbage collector: full collections
    over them cost tens of milliseconds each under load (they showed as the click p99)."""
    gc.collect()
    gc.freeze()
    return app


def app_from_environment() -> FastAPI:
    """The app for one of several server processes: each builds its own services from the
    settings its parent put in the environment."""
    from outreach.bootstrap import Services
    from outreach.settings import Settings

    return _frozen(create_app(Services(settings=Settings())))


def _export_settings(services: Services) -> None:
    """Hand the settings in force (command-line overrides included) to the server processes."""
    for name, value in services.settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = json.dumps(value)
        else:
            text = str(value)
        os.environ[f"OUTREACH_{name.upper()}"] = text


def serve(
    services: Services, *, host: str, port: int, access_log: bool = False, workers: int = 1
) -> None:
    """Serve the app on ``host:port`` until interrupted.

    uvicorn picks uvloop and httptools (declared dependencies). With ``workers`` > 1, that many
    server processes share the port; the scheduler, if any, stays in this process.
    """
    if workers > 1:
        _export_settings(services)
        uvicorn.run(
            "outreach.web.server:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            server_header=False,
            log_level="info",
            access_log=access_log,
        )
    else:
        uvicorn.run(
            _frozen(create_app(services)),
            host=host,
            port=port,
            server_header=False,
            log_level="info",
            access_log=access_log,
        )
