"""A stand-in for Twilio's Messages API, served over real HTTP on 127.0.0.1.

The real ``twilio`` library talks to it (``settings.TWILIO_API_BASE``), so the tests exercise the
library's request encoding (form parameters, HTTP Basic auth with the account SID and auth
token) and its error handling. It keeps Twilio's rules as documented:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` needs Basic auth with that account's
  SID and auth token (otherwise 401, code 20003) and form-encoded ``To``, ``Body`` and ``From``
  (one of the account's numbers: otherwise 21606) or ``MessagingServiceSid``.
- ``To`` must be an E.164 number: otherwise 400 with code 21211 ("not a valid phone number").
  Twilio's test numbers behave as documented: ``+15005550001`` is invalid (21211),
  ``+15005550004`` has replied STOP (21610), ``+15005550009`` cannot receive texts (21614).
- A created message answers 201 with its ``SM…`` sid and status ``queued``. Later, the carrier's
  answer comes as a status callback to the ``StatusCallback`` URL: :meth:`callback` builds it
  (parameters and the ``X-Twilio-Signature`` Twilio computes: base64 HMAC-SHA1, keyed with the
  auth token, of the URL followed by each parameter's name and value in name order).
  Numbers in ``undeliverable`` are accepted and then reported ``undelivered`` (30006, landline).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ACCOUNT_SID = "AC" + "5eed" * 8
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
FROM_NUMBER = "+15125550000"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
TEST_NUMBER_ERRORS = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """The ``X-Twilio-Signature`` of a POST of ``params`` to ``url`` (Twilio's documented scheme)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class FakeTwilio:
    def __init__(self):
        self.account_sid, self.auth_token, self.from_number = ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
        self.requests: list[dict] = []
        self.messages: dict[str, dict] = {}
        self.undeliverable: set[str] = set()
        self.fail_next: list[int] = []  # HTTP statuses to answer the next requests with (500, 503...)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # --- what Twilio would send us -------------------------------------------------------------

    def callback(self, sid: str, status: str | None = None) -> tuple[str, dict[str, str], str]:
        """The status callback Twilio sends for message ``sid``: (URL, parameters, signature).
        ``status`` defaults to the carrier's answer: delivered, or undelivered (30006)."""
        message = self.messages[sid]
        if status is None:
            status = "undelivered" if message["to"] in self.undeliverable else "delivered"
        params = {
            "AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "From": message["from"], "MessageSid": sid,
            "MessageStatus": status, "SmsSid": sid, "SmsStatus": status, "To": message["to"],
        }
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = "30006"
        message["status"] = status
        url = message["status_callback"]
        return url, params, twilio_signature(self.auth_token, url, params)

    def reply(self, url: str, *, from_number: str, body: str) -> tuple[dict[str, str], str]:
        """A patient's reply as Twilio forwards it to the number's messaging webhook ``url``."""
        sid = f"SM{next(self._ids):032x}"
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "Body": body, "From": from_number,
                  "MessageSid": sid, "NumMedia": "0", "SmsMessageSid": sid, "To": self.from_number}
        if body.strip().upper() in ("STOP", "START", "HELP"):
            params["OptOutType"] = body.strip().upper()
        return params, twilio_signature(self.auth_token, url, params)

    def sent(self) -> list[dict]:
        return list(self.messages.values())

    # --- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "form": form, "headers": headers})
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, {"code": 20500, "message": "An internal server error has occurred", "status": status}
            if not self._authorized(headers):
                return 401, _error(20003, "Authenticate", 401)
            match = MESSAGES_PATH.match(path)
            if method != "POST" or match is None:
                return 404, _error(20404, f"The requested resource {path} was not found", 404)
            if match["account"] != self.account_sid:
                return 403, _error(20003, "Authentication Error - the account SID does not match the credentials", 403)
            return self._create(form)

    def _authorized(self, headers) -> bool:
        given = headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return hmac.compare_digest(given.encode(), expected.encode())

    def _create(self, form: dict[str, str]) -> tuple[int, dict]:
        to, body = form.get("To", "").strip(), form.get("Body", "")
        if not to:
            return 400, _error(21604, "A 'To' phone number is required.")
        if not body.strip():
            return 400, _error(21602, "Message body is required.")
        sender = form.get("From", "")
        if not sender and not form.get("MessagingServiceSid"):
            return 400, _error(21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.")
        if sender and sender != self.from_number:
            return 400, _error(21606, f"The 'From' phone number provided ({sender}) is not a valid message-capable "
                                      "Twilio phone number for this destination/account.")
        if not E164.match(to):
            return 400, _error(21211, f"The 'To' number {to} is not a valid phone number.")
        if to in TEST_NUMBER_ERRORS:
            code, message = TEST_NUMBER_ERRORS[to]
            return 400, _error(code, message)
        sid = f"SM{next(self._ids):032x}"
        message = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body, "date_created": formatdate(),
            "date_sent": None, "date_updated": formatdate(), "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": sender or None, "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": str(max(1, -(-len(body) // 153))), "price": None, "price_unit": "USD",
            "sid": sid, "status": "queued", "to": to, "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "status_callback": form.get("StatusCallback", ""),
        }
        self.messages[sid] = message
        return 201, {k: v for k, v in message.items() if k != "status_callback"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = dict(parse_qsl(raw, keep_blank_values=True))
                status, body = fake.handle(self.command, urlsplit(self.path).path, form,
                                           {k.lower(): v for k, v in self.headers.items()})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        return Handler


def _error(code: int, message: str, status: int = 400) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
