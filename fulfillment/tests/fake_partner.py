"""A fake partner pharmacy on a real socket (127.0.0.1, a thread), as strict as the protocol of
``docs/partner-api.md``: Bearer key checked, an Idempotency-Key required, the first answer to a
key replayed for every repeat (a repeat with a different body is refused, 422), one order kept
per key whatever the client saw of the answer.

Tests script how it *answers* each order POST, in turn, with ``script``:

- ``"ok"``: 201 with the reference (the default when the script is empty);
- ``("status", code, body)``: that status and JSON body — the order is *not* kept;
- ``("kept_status", code, body)``: the same answer, but the order *is* kept (a partner that took
  the order and then failed to say so);
- ``("raw200", bytes)``: the order is kept, the answer is 200 with these bytes (malformed answers);
- ``"trickle_body"`` / ``"trickle_headers"``: the order is kept, the answer comes a byte every
  ``trickle_seconds`` (forever, until the client gives up);
- ``"hang"``: the order is kept, no answer until ``release`` is set (a partner that stalls).

It also answers the order lookup (``GET /orders?idempotency_key=``), the status call
(``GET /orders/{reference}``, lines as set in ``line_status``) and hold answers
(``POST /orders/{reference}/lines/{id}/responses``, multipart), recording every request in ``calls``.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakePartner

    def log_message(self, format, *args):
        pass

    def _json(self, status: int, data) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            self._json(401, {"error": "Invalid API key."})
            return False
        return True

    def _record(self, kind: str, **extra) -> dict:
        call = {"kind": kind, "path": self.path, "headers": dict(self.headers.items()), **extra}
        with self.server.lock:
            self.server.calls.append(call)
        return call

    def do_GET(self):  # noqa: N802
        if not self._authorized():
            return
        url = urlsplit(self.path)
        base = self.server.prefix
        if url.path == f"{base}/orders":
            key = (parse_qs(url.query).get("idempotency_key") or [""])[0]
            self._record("lookup", key=key)
            order = self.server.orders.get(key)
            if order is None:
                return self._json(404, {"error": "No order with this idempotency key."})
            return self._json(200, self.server.answer_for(order))
        if url.path.startswith(f"{base}/orders/"):
            reference = url.path[len(f"{base}/orders/"):]
            self._record("status", reference=reference)
            order = next((o for o in self.server.orders.values() if o["reference"] == reference), None)
            if order is None:
                return self._json(404, {"error": "No such order."})
            lines = []
            for line in order["payload"]["lines"]:
                state = self.server.line_status.get(line["line_id"], {"status": "received"})
                lines.append({"line_id": line["line_id"], "updated_at": "2025-03-04T16:40:00Z", **state})
            return self._json(200, {"reference": reference, "lines": lines})
        self._json(404, {"error": "Not found."})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        base = self.server.prefix
        if path.startswith(f"{base}/orders/") and path.endswith("/responses"):
            # /orders/{reference}/lines/{line_id}/responses
            reference, _, line_id = path[len(f"{base}/orders/"):-len("/responses")].partition("/lines/")
            return self._answer_hold(reference, line_id, raw)
        if path != f"{base}/orders":
            return self._json(404, {"error": "Not found."})
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key:
            return self._json(400, {"error": "An Idempotency-Key header is required."})
        try:
            payload = json.loads(raw)
        except ValueError:
            return self._json(400, {"error": "The body is not valid JSON."})
        call = self._record("order", key=key, line_ids=[line["line_id"] for line in payload.get("lines", [])])
        with self.server.lock:
            existing = self.server.orders.get(key)
            if existing is not None and existing["payload"] != payload:
                call["answer"] = 422
                return self._json(422, {"error": "This Idempotency-Key was used with another body."})
            how = self.server.script.pop(0) if self.server.script else "ok"
        call["how"] = how if isinstance(how, str) else how[0]
        if isinstance(how, tuple) and how[0] == "status":
            return self._json(how[1], how[2])
        order = existing or self.server.keep(key, payload)
        if isinstance(how, tuple) and how[0] == "kept_status":  # took the order, then failed to say so
            return self._json(how[1], how[2])
        if how == "ok":
            return self._json(200 if existing else 201, self.server.answer_for(order))
        if isinstance(how, tuple) and how[0] == "raw200":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(how[1])))
            self.end_headers()
            self.wfile.write(how[1])
            return None
        if how == "hang":
            self.server.release.wait(timeout=120)
            return self._json(201, self.server.answer_for(order))
        if how in ("trickle_body", "trickle_headers"):
            return self._trickle(how, order)
        raise AssertionError(f"unknown script step {how!r}")

    def _trickle(self, how: str, order: dict) -> None:
        body = json.dumps(self.server.answer_for(order)).encode()
        head = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                + b"X-Padding: " + b"x" * 5000 + b"\r\n"
                + f"Content-Length: {len(body) + 5000}\r\n\r\n".encode())
        padded = body + b" " * 5000
        slow, fast = (head, b"") if how == "trickle_headers" else (b"", head)
        try:
            self.wfile.write(fast)
            self.wfile.flush()
            for byte in (slow + padded) if slow else padded:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.server.trickle_seconds)
        except OSError:  # the client gave up: what a real partner would see
            with self.server.lock:
                self.server.cut_off += 1
        self.close_connection = True

    def _answer_hold(self, reference: str, line_id: str, raw: bytes) -> None:
        order = next((o for o in self.server.orders.values() if o["reference"] == reference), None)
        if order is None or not line_id.isdigit() or int(line_id) not in {
                line["line_id"] for line in order["payload"]["lines"]}:
            return self._json(404, {"error": f"No line {line_id} in order {reference}."})
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return self._json(415, {"error": "Send the answer as multipart/form-data."})
        message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw, policy=email.policy.HTTP)
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            return self._json(400, {"error": "An Idempotency-Key header is required."})
        text, files = "", []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "text":
                text = part.get_payload(decode=True).decode()
            elif name == "file":
                files.append({"filename": part.get_filename(), "content_type": part.get_content_type(),
                              "data": part.get_payload(decode=True)})
        if not text and not files:
            return self._json(422, {"error": "An answer needs a text or a file."})
        self._record("hold_answer", reference=reference, line_id=int(line_id), key=key, text=text, files=files)
        if self.server.hold_answer_status != 201:
            return self._json(self.server.hold_answer_status, {"error": "Cannot take answers right now."})
        self._json(201, {"id": f"resp-{line_id}-{key[:8]}", "status": "received"})


class FakePartner(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, api_key: str = "key-for-tests", prefix: str = "/api"):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        super().__init__((HOST, port), _Handler)
        self.api_key = api_key
        self.prefix = prefix
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        self.orders: dict[str, dict] = {}
        self.script: list = []
        self.line_status: dict[int, dict] = {}
        self.release = threading.Event()
        self.trickle_seconds = 0.05
        self.cut_off = 0
        self.hold_answer_status = 201
        self._counter = itertools.count(1)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}{self.prefix}"

    def keep(self, key: str, payload: dict) -> dict:
        order = {"reference": f"FAKE-{next(self._counter):05d}", "payload": payload}
        self.orders[key] = order
        return order

    def answer_for(self, order: dict) -> dict:
        return {"reference": order["reference"],
                "lines": [{"line_id": line["line_id"], "status": "received"} for line in order["payload"]["lines"]]}

    def of_kind(self, kind: str) -> list[dict]:
        return [c for c in self.calls if c["kind"] == kind]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.shutdown()
        self.server_close()
