"""A tiny HTTP file server on 127.0.0.1 for download tests (not a test module itself).

Serves in-memory files with ``Range: bytes=N-`` support. Knobs per server:
``cut_once``: paths whose first GET sends the headers of the full body, then half of it, then
closes the connection; ``ignore_range``: answer every request with 200 and the whole file.
``requests`` records ``(path, range_header)`` of every GET, for assertions.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Context manager: ``with LoopbackServer({"/a.bin": b"..."}) as srv: srv.url + "a.bin"``."""

    def __init__(self, files: dict[str, bytes], cut_once=(), ignore_range: bool = False):
        self.files = dict(files)
        self.cut_once = set(cut_once)
        self.ignore_range = ignore_range
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        """Base URL ending with '/'."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _take_cut(self, path: str) -> bool:
        with self._lock:
            if path in self.cut_once:
                self.cut_once.discard(path)
                return True
            return False


def _parse_range(header: str | None, size: int) -> int | None:
    """Start byte of ``bytes=N-`` / ``bytes=N-M`` or None for no (usable) range."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes="):].split(",")[0]
    start = first.split("-")[0]
    return int(start) if start.isdigit() else None


def _make_handler(server: LoopbackServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            rng = self.headers.get("Range")
            with server._lock:
                server.requests.append((self.path, rng))
            body = server.files.get(self.path)
            if body is None:
                self._send(404, b"not found", {})
                return
            start = None if server.ignore_range else _parse_range(rng, len(body))
            if start is not None and start >= len(body):
                self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            if start is None:
                status, payload, extra = 200, body, {}
            else:
                payload = body[start:]
                extra = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
                status = 206
            if server._take_cut(self.path):
                self._cut(status, payload, extra)
            else:
                self._send(status, payload, extra)

        def _send(self, status, payload, extra) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _cut(self, status, payload, extra) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    return Handler
