"""The API's answers, built from what the pages' selectors return (no second computation)."""

from __future__ import annotations

from carts.selectors import CartReview
from carts.validation import Problem
from fulfillment.selectors import status_summary


def patient(p) -> dict:
    return {
        "id": p.pk, "chart_id": p.chart_id, "first_name": p.first_name, "last_name": p.last_name,
        "date_of_birth": p.date_of_birth.isoformat() if p.date_of_birth else None, "phone": str(p.phone or ""),
        "email": p.email, "address_line1": p.address_line1, "address_line2": p.address_line2, "city": p.city,
        "state": p.state, "zip_code": p.zip_code, "updated_at": p.updated_at,
    }


def problem(p: Problem) -> dict:
    return {"line": p.line_id, "field": p.field, "code": p.code, "message": p.message, "severity": p.severity,
            "acknowledged": p.acknowledged}


def _routing(decision) -> dict | None:
    if decision is None:
        return None
    return {"routed": decision.routed, "partner": decision.partner.name if decision.partner else None,
            "reason": decision.reason, "unit_price": decision.unit_price, "shipping_share": decision.shipping_share,
            "landed_cost": decision.landed_cost}


def cart_line(line, review: CartReview) -> dict:
    """A reviewed line (``cart_review`` set ``line.decision`` and ``line.problems``)."""
    return {
        "id": line.pk, "patient": line.patient_id, "chart_id": line.patient.chart_id, "product": line.product_id,
        "product_sku": line.product.sku, "product_name": line.product.name, "prescriber": line.prescriber_id,
        "quantity": line.quantity, "sig": line.sig, "days_supply": line.days_supply, "refills": line.refills,
        "clinical_difference": line.clinical_difference, "notes": line.notes,
        "acknowledged_warnings": list(line.acknowledged_warnings),
        "routing": _routing(line.decision),
        "landed_cost": review.price.landed.get(line.pk),
        "problems": [problem(p) for p in line.problems],
    }


def cart(review: CartReview) -> dict:
    counts = review.problem_counts
    return {
        "id": review.cart.pk, "status": review.cart.status, "version": review.cart.version,
        "lines": review.counts["lines"], "patients": review.counts["patients"],
        "drugs": review.price.drugs, "fee": review.price.fee, "total": review.price.total,
        "unrouted_lines": list(review.totals.unrouted_line_ids),
        "errors": counts.errors, "warnings": counts.warnings, "can_checkout": review.can_checkout,
    }


def order_summary(order, counts: dict[str, int] | None = None) -> dict:
    if counts is None:
        counts = {s["status"]: s["count"] for s in getattr(order, "status_summary", [])}
    return {"id": order.pk, "number": order.number, "placed_at": order.placed_at, "total": order.total,
            "payment_status": order.payment_status, "lines": sum(counts.values()), "statuses": counts}


def order_line(line) -> dict:
    return {
        "id": line.pk, "patient": line.patient_id, "chart_id": line.patient.chart_id, "product": line.product_id,
        "quantity": line.quantity, "status": line.status, "reason_code": line.reason_code,
        "status_changed_at": line.status_changed_at,
        "partner": line.partner_order.partner.name, "carrier": line.carrier, "tracking_number": line.tracking_number,
        "tracking_url": line.tracking_url, "price": line.price, "net_charged": line.net_charged,
    }


def order(order, lines, money: dict) -> dict:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line.status] = counts.get(line.status, 0) + 1
    return {**order_summary(order, counts),
            "money": {k: money[k] for k in ("authorized", "captured", "charged_later", "refunded", "fee", "net")},
            "order_lines": [order_line(line) for line in lines]}


def prescription(rx) -> dict:
    return {"id": rx.pk, "reference": rx.reference, "patient": rx.patient_id, "product": rx.product_id,
            "prescriber": rx.prescriber_id, "source": rx.source, "status": rx.effective_status(),
            "quantity": rx.quantity, "days_supply": rx.days_supply, "refills_authorized": rx.refills_authorized,
            "fills_remaining": rx.fills_remaining, "written_on": rx.written_on, "expires_on": rx.expires_on,
            "erx_message_id": rx.erx_message_id, "rx_number": rx.rx_number, "has_document": bool(rx.document)}


def subscription(s) -> dict:
    return {"id": s.pk, "url": s.url, "events": list(s.events), "active": s.active, "created_at": s.created_at}


__all__ = ["patient", "problem", "cart_line", "cart", "order_summary", "order", "status_summary"]
