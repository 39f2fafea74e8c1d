"""A clinic's webhook endpoint, on a local port: records what it receives and answers with the
statuses it is told to (200 by default)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_POST(self):  # noqa: N802
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size).decode()
        server: FakeReceiver = self.server
        with server.lock:
            status = server.answers.pop(0) if server.answers else 200
            server.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                                    "status": status})
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if status < 300 else b"no")


class FakeReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fizy-hooks"

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received if r["status"] < 300]

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
