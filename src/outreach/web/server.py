"""Running the web app: ``outreach serve`` calls ``serve``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn

from outreach.web.app import create_app

if TYPE_CHECKING:
    from outreach.bootstrap import Services


def serve(services: Services, *, host: str, port: int) -> None:
    """Serve the app on ``host:port`` until interrupted (uvicorn, one process)."""
    uvicorn.run(create_app(services), host=host, port=port, server_header=False, log_level="info")
