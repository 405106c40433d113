"""The metrics endpoint's HTTP side: which requests get an answer, and the threaded server.

prometheus_client's WSGI app answers every path with the metrics (for backward
compatibility), so `/debug` or `/../../etc/passwd` got a 200 and a body, and a scanner or a
person is told more is served than is. Here `/metrics` (GET and HEAD) goes to that app
unchanged, so its content negotiation (OpenMetrics by Accept header, gzip) keeps working;
`/` is a small page linking to it; any other path is 404 and any other method 405.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

StartResponse = Callable[..., Callable[[bytes], object]]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]

METHODS = ("GET", "HEAD")
_INDEX = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>arpwatchd</title></head>
<body><h1>arpwatchd</h1><p><a href="/metrics">Metrics</a></p></body></html>
"""


def routed(metrics: App) -> App:
    """`metrics` at /metrics, an index at /, 404 and 405 for everything else."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == "/metrics" and method in METHODS:
            status, headers, body = _get(metrics, environ)
        elif path == "/" and method in METHODS:
            status, headers, body = "200 OK", [("Content-Type", "text/html; charset=utf-8")], _INDEX
        elif path in ("/", "/metrics"):
            status, headers = "405 Method Not Allowed", [("Allow", ", ".join(METHODS))]
            body = f"{method} is not served here; use GET\n".encode()
        else:
            status, headers, body = "404 Not Found", [], b"Not found; the metrics are at /metrics\n"
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    return app


def _get(app: App, environ: dict[str, Any]) -> tuple[str, Headers, bytes]:
    """Runs `app` as for a GET (prometheus_client refuses HEAD) and keeps what it answered."""
    answered: list[tuple[str, Headers]] = []

    def start_response(status: str, headers: Headers, exc_info: object = None
                       ) -> Callable[[bytes], object]:
        answered.append((status, list(headers)))
        return lambda data: None

    body = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, start_response))
    status, headers = answered[-1]
    return status, headers, body


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    """A scrape that hangs must not keep the process from exiting."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one every 15 s would drown the sensor's own lines."""


def serve(app: App, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serves `app` on host:port (IPv4 or IPv6, as the address says) from a daemon thread.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("Server", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(str(address[0]), port, app, server_class,
                                     handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
