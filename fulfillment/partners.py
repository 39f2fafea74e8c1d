"""Partner pharmacy clients: the order payload we send and the HTTP client that sends it.

The protocol is written down in ``docs/partner-api.md``. Errors are typed so dispatch can tell a
partner that is down (retry later) from one that refuses the order (retrying will not help).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests
from django.conf import settings

from catalog.models import Partner

from .models import OrderLine, PartnerOrder

PROTOCOL_VERSION = "2025-01"
USER_AGENT = "Fizy-Dispatch/1"


class PartnerError(Exception):
    """The partner did not take the order. ``reason`` is readable by pharmacy staff."""

    transient = False

    def __init__(self, reason: str, *, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class PartnerUnavailable(PartnerError):
    """Timeout, connection error, 5xx or 429, or an unreadable answer: try again later."""

    transient = True


class PartnerRejected(PartnerError):
    """A 4xx answer: the partner refuses this request as sent; retrying it unchanged will not help."""


@dataclass(frozen=True)
class PartnerLineAnswer:
    line_id: int
    status: str  # "accepted" | "rejected" | "received"
    reason: str = ""


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
            }
            for line in lines
        ],
    }


# --- client ------------------------------------------------------------------------------------


def _timeouts() -> tuple[float, float]:
    return (
        settings.PARTNER_CONNECT_TIMEOUT,
        settings.PARTNER_READ_TIMEOUT,
    )


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(data, dict):
        return str(data.get("error") or data.get("detail") or data.get("message") or data)[:300]
    return str(data)[:300]


class PartnerClient:
    """Talks to one partner's order API with ``requests``: Bearer key, Idempotency-Key, timeouts."""

    def __init__(self, partner: Partner, *, session: requests.Session | None = None):
        self.partner = partner
        self.session = session or requests.Session()

    @property
    def orders_url(self) -> str:
        return self.partner.api_base_url.rstrip("/") + "/orders"

    def send_order(self, payload: dict, *, idempotency_key: str) -> PartnerOrderAnswer:
        """POST the order. Raises :class:`PartnerUnavailable` (retry) or :class:`PartnerRejected`."""
        name = self.partner.name
        if not self.partner.api_base_url:
            raise PartnerRejected(f"{name} has no order API URL configured.")
        headers = {
            "Authorization": f"Bearer {self.partner.api_key}",
            "Idempotency-Key": str(idempotency_key),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        try:
            response = self.session.post(self.orders_url, json=payload, headers=headers, timeout=_timeouts())
        except requests.Timeout:
            raise PartnerUnavailable(f"{name} did not answer in time.") from None
        except requests.ConnectionError:
            raise PartnerUnavailable(f"Could not connect to {name}.") from None
        except requests.RequestException as exc:
            raise PartnerUnavailable(f"Request to {name} failed: {exc.__class__.__name__}.") from None

        status = response.status_code
        if status >= 500 or status == 429:
            raise PartnerUnavailable(
                f"{name} answered {status}: {_error_text(response) or response.reason}", status_code=status
            )
        if status >= 400:
            raise PartnerRejected(
                f"{name} refused the order ({status}): {_error_text(response) or response.reason}", status_code=status
            )
        return self._answer(response)

    def _answer(self, response: requests.Response) -> PartnerOrderAnswer:
        name = self.partner.name
        try:
            data = response.json()
        except ValueError:
            raise PartnerUnavailable(f"{name} answered {response.status_code} with a body that is not JSON.") from None
        reference = data.get("reference") if isinstance(data, dict) else None
        if not isinstance(reference, str) or not reference.strip():
            raise PartnerUnavailable(f"{name} answered {response.status_code} without an order reference.")
        answers = []
        for item in data.get("lines") or []:
            if not isinstance(item, dict):
                continue
            line_id, status = item.get("line_id"), item.get("status")
            if isinstance(line_id, int) and status in ("accepted", "rejected", "received"):
                answers.append(PartnerLineAnswer(line_id=line_id, status=status, reason=str(item.get("reason") or "")))
        return PartnerOrderAnswer(reference=reference.strip()[:100], lines=answers)

    def cancel_line(self, *, reference: str, line_id: int, idempotency_key: str, reason: str) -> str:
        """Ask the partner to cancel one line before it ships: ``POST {api}/orders/{reference}/
        lines/{line_id}/cancel``. Returns "cancelled" (done: 200) or "requested" (the partner will
        confirm with a ``cancelled`` webhook: 202). Raises PartnerRejected when it cannot be
        cancelled any more (409: compounded or shipped), PartnerUnavailable when the partner
        cannot be reached."""
        name = self.partner.name
        url = f"{self.partner.api_base_url.rstrip('/')}/orders/{reference}/lines/{line_id}/cancel"
        headers = {
            "Authorization": f"Bearer {self.partner.api_key}", "Idempotency-Key": idempotency_key,
            "User-Agent": USER_AGENT, "Accept": "application/json",
        }
        try:
            response = self.session.post(url, json={"reason": reason}, headers=headers, timeout=_timeouts())
        except requests.RequestException as exc:
            raise PartnerUnavailable(f"Could not reach {name} to cancel the line ({exc.__class__.__name__}).") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise PartnerUnavailable(f"{name} answered {response.status_code}.", status_code=response.status_code)
        if response.status_code >= 400:
            raise PartnerRejected(
                f"{name} cannot cancel the line: {_error_text(response) or response.reason}",
                status_code=response.status_code,
            )
        return "requested" if response.status_code == 202 else "cancelled"
