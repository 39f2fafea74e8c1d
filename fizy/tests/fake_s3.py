"""A local S3-compatible object store for the tests (path-style: /bucket/key), as strict as S3 on
what Fizy relies on: every request must be signed (AWS Signature V4) with the configured access
key, a missing bucket answers NoSuchBucket, a missing object 404, and the headers of each PUT
(ACL, server-side encryption, content type) are kept so tests can check what was asked for."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class StoredObject:
    body: bytes
    headers: dict


@dataclass
class FakeS3:
    access_key: str
    buckets: dict = field(default_factory=dict)  # name -> {key: StoredObject}
    requests: list = field(default_factory=list)  # (method, path)
    url: str = ""

    def objects(self, bucket: str) -> dict:
        return self.buckets[bucket]


def _error(handler, status: int, code: str) -> None:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(0 if handler.command == "HEAD" else len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _handler(s3: FakeS3):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # boto3 sends "Expect: 100-continue" with a PUT

        def log_message(self, *args):
            pass

        def _target(self):
            s3.requests.append((self.command, self.path))
            auth = self.headers.get("Authorization", "")
            if not auth.startswith(f"AWS4-HMAC-SHA256 Credential={s3.access_key}/"):
                _error(self, 403, "SignatureDoesNotMatch")
                return None
            bucket, _, key = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
            if bucket not in s3.buckets:
                _error(self, 404, "NoSuchBucket")
                return None
            return s3.buckets[bucket], key

        def do_PUT(self):
            target = self._target()
            if target is None:
                return
            objects, key = target
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            objects[key] = StoredObject(body=body, headers={k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("ETag", f'"{len(body):x}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send_object(self, with_body: bool):
            target = self._target()
            if target is None:
                return
            objects, key = target
            stored = objects.get(key)
            if stored is None:
                _error(self, 404, "NoSuchKey")
                return
            self.send_response(200)
            self.send_header("Content-Type", stored.headers.get("content-type", "binary/octet-stream"))
            self.send_header("Content-Length", str(len(stored.body)))
            self.send_header("ETag", f'"{len(stored.body):x}"')
            self.send_header("Last-Modified", "Fri, 27 Nov 2026 09:00:00 GMT")
            self.end_headers()
            if with_body:
                self.wfile.write(stored.body)

        def do_GET(self):
            self._send_object(with_body=True)

        def do_HEAD(self):
            self._send_object(with_body=False)

        def do_DELETE(self):
            target = self._target()
            if target is None:
                return
            objects, key = target
            objects.pop(key, None)
            self.send_response(204)
            self.end_headers()

    return Handler


def start_fake_s3(*, access_key: str, buckets: tuple[str, ...]):
    """Start the store on a free local port; returns (FakeS3, stop)."""
    s3 = FakeS3(access_key=access_key, buckets={name: {} for name in buckets})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(s3))
    s3.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return s3, stop
