"""Partner pharmacy clients: the order payload we send and the HTTP client that sends it.

The protocol is written down in ``docs/partner-api.md``. Errors are typed so dispatch can tell a
partner that is down (retry later) from one that refuses the order (retrying will not help).

Every call is one *attempt* with an overall deadline (``PARTNER_ATTEMPT_DEADLINE``, shorter than
the queue's task timeout): ``requests``' own timeouts bound the connect and each read, so a
partner that trickles its answer a byte at a time would otherwise hold the worker until the
queue kills it mid-call. Past the deadline the attempt's sockets are shut down and the attempt
ends as :class:`PartnerUnavailable`. An answer is read whole (at most ``MAX_ANSWER_BYTES``) and
its shape checked before anything in it is used.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

import requests
from django.conf import settings
from django.urls import reverse
from requests.adapters import HTTPAdapter

from catalog.models import Partner
from prescriptions.documents import document_link_token

from .models import OrderLine, PartnerOrder
from .reasons import ReasonCode

PROTOCOL_VERSION = "2025-01"
USER_AGENT = "Fizy-Dispatch/1"
MAX_ANSWER_BYTES = 1_000_000
LINE_ANSWER_STATUSES = ("accepted", "rejected", "received")
# What the status call may report for a line: "received" (nothing new) or a status a webhook may carry.
_LS = OrderLine.Status
LINE_REPORT_STATUSES = ("received", _LS.ACCEPTED, _LS.COMPOUNDING, _LS.SHIPPED, _LS.DELIVERED, _LS.REJECTED,
                        _LS.ON_HOLD, _LS.CANCELLED)


class PartnerError(Exception):
    """The partner did not take the request. ``reason`` is readable by pharmacy staff."""

    transient = False

    def __init__(self, reason: str, *, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class PartnerUnavailable(PartnerError):
    """Timeout, connection error, 5xx or 429, or an answer we cannot use: try again later. The
    partner may have received the order (it answered, or stopped answering half-way)."""

    transient = True


class PartnerBadAnswer(PartnerUnavailable):
    """A 2xx answer that is not the protocol's shape (not JSON, no reference, ``lines`` not a
    list…). The partner probably has the order; the same Idempotency-Key asks it again."""


class PartnerRejected(PartnerError):
    """A 4xx answer: the partner refuses this request as sent; retrying it unchanged will not help."""


@dataclass(frozen=True)
class PartnerLineAnswer:
    line_id: int
    status: str  # "accepted" | "rejected" | "received"
    reason: str = ""
    reason_code: str = ""


@dataclass(frozen=True)
class PartnerOrderAnswer:
    reference: str
    lines: list[PartnerLineAnswer] = field(default_factory=list)


# --- payload -----------------------------------------------------------------------------------


def _patient(line: OrderLine) -> dict:
    snap = line.patient_snapshot  # Patient.snapshot() at checkout
    return {
        "id": line.patient_id,
        **{key: snap.get(key, "") for key in ("chart_id", "first_name", "last_name", "date_of_birth", "phone")},
        "address": snap.get("address", {}),
    }


def _prescriber(line: OrderLine) -> dict:
    snap = line.prescriber_snapshot  # Prescriber.snapshot(state=…) at checkout
    license_ = snap.get("license") or {}
    return {
        "name": snap.get("name", ""),
        "npi": snap.get("npi", ""),
        "license_state": license_.get("state", ""),
        "license_number": license_.get("number", ""),
        "dea_number": snap.get("dea", ""),
    }


def _prescription(line: OrderLine, partner_order: PartnerOrder) -> dict | None:
    """The prescription of record the line fills: its source, dates and refills left, and the
    e-prescription reference or a short-lived signed link to the signed document (for this
    partner and this line only)."""
    rx = line.prescription
    if rx is None:
        return None
    out = {
        "source": rx.source, "reference": rx.reference, "written_on": rx.written_on.isoformat(),
        "expires_on": rx.expires_on.isoformat(), "refills_authorized": rx.refills_authorized,
        "refills_remaining": rx.refills_remaining, "quantity_per_fill": rx.quantity, "days_supply": rx.days_supply,
        "erx_message_id": rx.erx_message_id, "rx_number": rx.rx_number,
    }
    if rx.source == rx.Source.WRITTEN:
        out["attestation"] = {"name": rx.attested_name, "at": rx.attested_at.isoformat() if rx.attested_at else None}
    if rx.document:
        token = document_link_token(prescription_id=rx.pk, order_line_id=line.pk, partner_id=partner_order.partner_id)
        out["document_url"] = settings.SITE_URL + reverse("fulfillment:partner-prescription-document", args=[token])
        out["document_content_type"] = rx.document_content_type
        out["document_link_expires_in"] = settings.PRESCRIPTION_DOCUMENT_LINK_MAX_AGE
    return out


def build_order_payload(partner_order: PartnerOrder, lines: list[OrderLine]) -> dict:
    """The JSON body of ``POST {api_base_url}/orders`` for these lines of ``partner_order``.

    Reads only the snapshots taken at checkout (``Order.ship_to`` from Clinic.ship_to_snapshot,
    ``OrderLine.patient_snapshot``, ``prescriber_snapshot``, product name, SKU, SIG…), so a
    retry sends exactly what was ordered. ``lines`` should come with ``product`` selected."""
    order = partner_order.order
    ship_to = order.ship_to
    return {
        "protocol": PROTOCOL_VERSION,
        "order_id": partner_order.pk,
        "fizy_order_number": order.number,
        "placed_at": order.placed_at.isoformat(),
        "clinic": {"name": ship_to.get("clinic", ""), "npi": ship_to.get("npi", ""), "dea_number": ship_to.get("dea", "")},
        "ship_to": ship_to.get("address", {}),
        "lines": [
            {
                "line_id": line.pk,
                "patient": _patient(line),
                "product": {
                    "name": line.product_name,
                    "fizy_sku": line.product.sku,
                    "partner_sku": line.partner_sku,
                    "dea_schedule": line.product.dea_schedule,
                },
                "quantity": line.quantity,
                "sig": line.sig,
                "days_supply": line.days_supply,
                "refills": line.refills,
                "clinical_difference": line.clinical_difference,
                "prescriber": _prescriber(line),
                "prescription": _prescription(line, partner_order),
            }
            for line in lines
        ],
    }



# --- answers -----------------------------------------------------------------------------------


def _line_head(item, index: int, statuses) -> tuple[str, int, str]:
    """Where a line of a partner's answer sits, its line id and its status, checked."""
    where = f"lines[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object")
    line_id, status = item.get("line_id"), item.get("status")
    if not isinstance(line_id, int) or isinstance(line_id, bool) or line_id < 1:
        raise ValueError(f"{where}.line_id is not a positive integer")
    if status not in statuses:
        raise ValueError(f"{where}.status must be one of {', '.join(statuses)}")
    return where, line_id, status


def _line_answer(item, index: int) -> PartnerLineAnswer:
    where, line_id, status = _line_head(item, index, LINE_ANSWER_STATUSES)
    reason, code = item.get("reason") or "", item.get("reason_code") or ""
    if not isinstance(reason, str) or not isinstance(code, str):
        raise ValueError(f"{where}.reason and reason_code must be strings")
    if code and code not in ReasonCode.values:
        raise ValueError(f"{where}.reason_code {code[:40]!r} is not a known reason code")
    if status == "rejected" and not code:
        code = ReasonCode.OTHER
    return PartnerLineAnswer(line_id=line_id, status=status, reason=reason.strip()[:2000], reason_code=code)


def parse_order_answer(data) -> PartnerOrderAnswer:
    """The partner's answer to an order (or to an order lookup), checked field by field.
    Raises ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    reference = data.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError("it has no order reference")
    if len(reference.strip()) > 100:
        raise ValueError("its reference is longer than 100 characters")
    lines = data.get("lines")
    if lines is None:
        lines = []
    if not isinstance(lines, list):
        raise ValueError(f"'lines' must be a list, not {type(lines).__name__}")
    return PartnerOrderAnswer(reference=reference.strip(), lines=[_line_answer(item, i) for i, item in enumerate(lines)])


@dataclass(frozen=True)
class PartnerLineStatus:
    """One line in the partner's answer to the status call (the fields of a status webhook)."""

    line_id: int
    status: str
    reason: str = ""
    reason_code: str = ""
    tracking_number: str = ""
    carrier: str = ""
    updated_at: str = ""


def _line_status(item, index: int) -> PartnerLineStatus:
    where, line_id, status = _line_head(item, index, LINE_REPORT_STATUSES)
    text = {key: item.get(key) or "" for key in ("reason", "reason_code", "tracking_number", "carrier", "updated_at")}
    if not all(isinstance(value, str) for value in text.values()):
        raise ValueError(f"{where}: reason, reason_code, tracking_number, carrier and updated_at must be strings")
    if text["reason_code"] and text["reason_code"] not in ReasonCode.values:
        raise ValueError(f"{where}.reason_code {text['reason_code'][:40]!r} is not a known reason code")
    if status in (_LS.REJECTED, _LS.ON_HOLD, _LS.CANCELLED) and not text["reason"].strip():
        raise ValueError(f"{where}.reason is required when the status is {status}")
    if status in (_LS.REJECTED, _LS.ON_HOLD) and not text["reason_code"]:
        raise ValueError(f"{where}.reason_code is required when the status is {status}")
    if status == _LS.SHIPPED and not (text["tracking_number"].strip() and text["carrier"].strip()):
        raise ValueError(f"{where}: tracking_number and carrier are required when the status is shipped")
    return PartnerLineStatus(
        line_id=line_id, status=status, reason=text["reason"].strip()[:2000],
        reason_code=text["reason_code"] or (ReasonCode.OTHER if status == _LS.CANCELLED else ""),
        tracking_number=text["tracking_number"].strip()[:100], carrier=text["carrier"].strip()[:40],
        updated_at=text["updated_at"][:40],
    )


def parse_status_answer(data, *, reference: str) -> list[PartnerLineStatus]:
    """The partner's answer to the status call, checked field by field. Raises ValueError."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    if data.get("reference") != reference:
        raise ValueError(f"it is not about order {reference}")
    lines = data.get("lines")
    if not isinstance(lines, list):
        raise ValueError("'lines' must be a list")
    return [_line_status(item, i) for i, item in enumerate(lines)]


# --- client ------------------------------------------------------------------------------------


def _error_text(status: int, body: bytes, reason: str) -> str:
    text = body[:2000].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300].strip() or reason
    if isinstance(data, dict):
        return str(data.get("error") or data.get("detail") or data.get("message") or data)[:300]
    return str(data)[:300]


class _TrackingAdapter(HTTPAdapter):
    """An adapter that remembers the connections it opens, so that an attempt past its deadline can
    shut their sockets down (which ends a blocked read at once, in the thread doing it)."""

    def __init__(self):
        self.connections: list = []
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        opened = self.connections

        def tracking(pool_class):
            class TrackingPool(pool_class):
                def _new_conn(self):
                    conn = super()._new_conn()
                    opened.append(conn)
                    return conn

            return TrackingPool

        manager = self.poolmanager
        manager.pool_classes_by_scheme = {scheme: tracking(cls) for scheme, cls in manager.pool_classes_by_scheme.items()}

    def shut(self) -> None:
        for conn in list(self.connections):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    reason: str


class PartnerClient:
    """Talks to one partner's API with ``requests``: Bearer key, Idempotency-Key, timeouts, and an
    overall deadline per call. One client per attempt (its connections are its own)."""

    def __init__(self, partner: Partner, *, session: requests.Session | None = None):
        self.partner = partner
        self.adapter = _TrackingAdapter()
        self.session = session or requests.Session()
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)

    @property
    def base_url(self) -> str:
        return self.partner.api_base_url.rstrip("/")

    @property
    def orders_url(self) -> str:
        return self.base_url + "/orders"

    def _headers(self, **extra) -> dict:
        return {
            "Authorization": f"Bearer {self.partner.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            **extra,
        }

    def _exchange(self, method: str, url: str, **kwargs) -> _Answer:
        """One HTTP request and its whole answer within the attempt's deadline."""
        name = self.partner.name
        if not self.partner.api_base_url:
            raise PartnerRejected(f"{name} has no API URL configured.")
        deadline = float(settings.PARTNER_ATTEMPT_DEADLINE)
        expired = threading.Event()

        def expire():
            expired.set()
            self.adapter.shut()

        timer = threading.Timer(deadline, expire)
        timer.daemon = True
        timeouts = (min(settings.PARTNER_CONNECT_TIMEOUT, deadline), min(settings.PARTNER_READ_TIMEOUT, deadline))
        timer.start()
        try:
            try:
                with self.session.request(method, url, stream=True, timeout=timeouts, **kwargs) as response:
                    body = bytearray()
                    for chunk in response.iter_content(65536):
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise PartnerBadAnswer(
                                f"{name} answered {response.status_code} with more than {MAX_ANSWER_BYTES // 1000} kB.",
                                status_code=response.status_code,
                            )
                    answer = _Answer(response.status_code, bytes(body), response.reason or "")
            except requests.RequestException as exc:
                if expired.is_set():
                    raise PartnerUnavailable(f"{name} did not finish answering within {deadline:g} s.") from None
                if isinstance(exc, requests.Timeout):
                    raise PartnerUnavailable(f"{name} did not answer in time.") from None
                if isinstance(exc, requests.ConnectionError):
                    raise PartnerUnavailable(f"Could not connect to {name}.") from None
                raise PartnerUnavailable(f"Request to {name} failed: {exc.__class__.__name__}.") from None
        finally:
            timer.cancel()
        if expired.is_set():
            # The deadline passed while the last bytes came in: the answer may be cut short.
            raise PartnerUnavailable(f"{name} did not finish answering within {deadline:g} s.")
        return answer

    def _raise_for_status(self, answer: _Answer, what: str) -> None:
        name, status = self.partner.name, answer.status
        text = _error_text(status, answer.body, answer.reason)
        if status >= 500 or status == 429:
            raise PartnerUnavailable(f"{name} answered {status}: {text}", status_code=status)
        if status >= 400:
            raise PartnerRejected(f"{name} refused {what} ({status}): {text}", status_code=status)
        if status >= 300 or status < 200:
            raise PartnerBadAnswer(f"{name} answered {status}, which the protocol does not use.", status_code=status)

    def _order_answer(self, answer: _Answer) -> PartnerOrderAnswer:
        name = self.partner.name
        try:
            data = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise PartnerBadAnswer(f"{name} answered {answer.status} with a body that is not JSON.", status_code=answer.status) from None
        try:
            return parse_order_answer(data)
        except ValueError as exc:
            raise PartnerBadAnswer(f"{name} answered {answer.status} with a malformed answer: {exc}.", status_code=answer.status) from None

    def send_order(self, payload: dict, *, idempotency_key: str) -> PartnerOrderAnswer:
        """POST the order. Raises :class:`PartnerUnavailable` (retry) or :class:`PartnerRejected`."""
        answer = self._exchange(
            "POST", self.orders_url, json=payload, headers=self._headers(**{"Idempotency-Key": str(idempotency_key)})
        )
        self._raise_for_status(answer, "the order")
        return self._order_answer(answer)

    def lookup_order(self, *, idempotency_key: str) -> PartnerOrderAnswer | None:
        """Ask the partner whether it has the order sent under ``idempotency_key``
        (``GET /orders?idempotency_key=…``): its answer, or None when it has no such order (404)."""
        answer = self._exchange(
            "GET", self.orders_url, params={"idempotency_key": str(idempotency_key)}, headers=self._headers()
        )
        if answer.status == 404:
            return None
        self._raise_for_status(answer, "the order lookup")
        return self._order_answer(answer)

    def order_status(self, *, reference: str) -> list[PartnerLineStatus]:
        """The status call (``GET /orders/{reference}``): where each line of the order is now.
        Raises :class:`PartnerUnavailable` (try later; a malformed answer is a :class:`PartnerBadAnswer`)
        or :class:`PartnerRejected` (404: the partner does not know the reference)."""
        answer = self._exchange("GET", f"{self.orders_url}/{quote(reference, safe='')}", headers=self._headers())
        self._raise_for_status(answer, "the status call")
        name = self.partner.name
        try:
            data = json.loads(answer.body.decode("utf-8"))
            return parse_status_answer(data, reference=reference)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PartnerBadAnswer(f"{name} answered the status call with a malformed answer: {exc}.", status_code=answer.status) from None

    def cancel_line(self, *, reference: str, line_id: int, idempotency_key: str, reason: str) -> str:
        """Ask the partner to cancel one line before it ships: ``POST {api}/orders/{reference}/
        lines/{line_id}/cancel``. Returns "cancelled" (done: 200) or "requested" (the partner will
        confirm with a ``cancelled`` webhook: 202). Raises PartnerRejected when it cannot be
        cancelled any more (409: compounded or shipped), PartnerUnavailable when the partner
        cannot be reached."""
        name = self.partner.name
        try:
            answer = self._exchange(
                "POST", f"{self.base_url}/orders/{reference}/lines/{line_id}/cancel", json={"reason": reason},
                headers=self._headers(**{"Idempotency-Key": idempotency_key}),
            )
        except PartnerUnavailable as exc:
            raise PartnerUnavailable(f"Could not reach {name} to cancel the line: {exc.reason}") from None
        if answer.status >= 500 or answer.status == 429:
            raise PartnerUnavailable(f"{name} answered {answer.status}.", status_code=answer.status)
        if answer.status >= 400:
            raise PartnerRejected(
                f"{name} cannot cancel the line: {_error_text(answer.status, answer.body, answer.reason)}",
                status_code=answer.status,
            )
        return "requested" if answer.status == 202 else "cancelled"

    def answer_hold(self, *, reference: str, line_id: int, text: str, file: tuple[str, bytes, str] | None,
                    idempotency_key: str) -> str:
        """Answer a held line: ``POST {api}/orders/{reference}/lines/{line_id}/responses``, as
        multipart/form-data with a ``text`` field and at most one ``file`` part (``file`` is
        (name, bytes, content type)). Returns the partner's id for the answer. Raises
        PartnerRejected when the partner refuses it (4xx), PartnerUnavailable when it cannot be
        reached or fails (5xx): the clinic may send it again (same Idempotency-Key)."""
        name = self.partner.name
        parts = {"text": (None, text.encode("utf-8"), "text/plain; charset=utf-8")}
        if file is not None:
            parts["file"] = file
        try:
            answer = self._exchange(
                "POST", f"{self.base_url}/orders/{reference}/lines/{line_id}/responses", files=parts,
                headers=self._headers(**{"Idempotency-Key": idempotency_key}),
            )
        except PartnerUnavailable as exc:
            raise PartnerUnavailable(f"Could not reach {name} to send the answer: {exc.reason}") from None
        if answer.status >= 500 or answer.status == 429:
            raise PartnerUnavailable(f"{name} answered {answer.status}; try again in a moment.", status_code=answer.status)
        if answer.status >= 400:
            raise PartnerRejected(f"{name} did not take the answer: {_error_text(answer.status, answer.body, answer.reason)}",
                                  status_code=answer.status)
        try:
            data = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = {}
        return str(data.get("id", ""))[:100] if isinstance(data, dict) else ""
