"""A real HTTP server on 127.0.0.1 that answers with a plain function ``httpx.Request -> Response``.

    with LocalHttpServer(fake) as server:
        mailer = open_mailer(f"sendgrid+api://KEY@127.0.0.1:{server.port}")

The same function serves ``httpx.MockTransport`` in the tests that inject faults, so a fake
provider is written once and used both over a socket and in memory. Keep-alive (HTTP/1.1) is
on; ``connections`` counts the TCP connections clients opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

Handler = Callable[[httpx.Request], httpx.Response]
HOST = "127.0.0.1"


class LocalHttpServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def __enter__(self) -> LocalHttpServer:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = httpx.Request(
                    self.command,
                    f"http://{HOST}:{owner.port}{self.path}",
                    headers=list(self.headers.items()),
                    content=body,
                )
                response = owner.handler(request)
                content = response.read()
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_POST = _serve
            do_GET = _serve

        self._server = ThreadingHTTPServer((HOST, 0), _Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
