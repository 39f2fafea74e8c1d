"""Reads the notices pages, the coordinators' emails and the digest need."""

from __future__ import annotations

from collections import Counter

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet

from clinics.models import Clinic
from fizy.lib.http import parse_id
from fulfillment.models import Order, OrderLine
from fulfillment.selectors import attention_items

from .models import Message, Notice, TrackingLink


def digest_items(*, clinic: Clinic) -> list[OrderLine]:
    """What the coordinators' daily digest lists: the lines of the clinic's open Needs-attention
    items (rejected, on hold or not sent, until re-ordered, answered, rerouted or dismissed)."""
    return [item.line for item in attention_items(clinic=clinic)]


def coordinator_emails(*, clinic: Clinic) -> list[str]:
    """The addresses of the clinic's members (coordinators and clinic admins) who have one."""
    emails = (get_user_model().objects.filter(memberships__clinic=clinic, is_active=True)
              .exclude(email="").order_by("email").values_list("email", flat=True))
    return list(dict.fromkeys(emails))


def messages_page(*, clinic: Clinic | None, channel: str = "", status: str = "", search: str = "") -> QuerySet[Message]:
    """Every message that went (or would have gone) out, newest first: for one clinic, or for all
    (pharmacy staff). Filtered by channel, status and a patient or order search."""
    messages = Message.objects.select_related("notice__patient", "notice__order", "notice__clinic")
    if clinic is not None:
        messages = messages.filter(notice__clinic=clinic)
    if channel:
        messages = messages.filter(channel=channel)
    if status:
        messages = messages.filter(status=status)
    for word in search.split()[:4]:
        number = word.upper().removeprefix("FZ-").lstrip("0")
        condition = Q(notice__patient__first_name__icontains=word) | Q(notice__patient__last_name__icontains=word)
        if parse_id(number):
            condition |= Q(notice__order_id=parse_id(number))
        messages = messages.filter(condition)
    return messages.order_by("-created_at", "-id")


def notices_not_sent(*, clinic: Clinic | None, limit: int = 50) -> list[Notice]:
    """Recent notices that did not go out (no consent, opted out, failed), with why."""
    notices = Notice.objects.filter(status__in=[Notice.Status.NOT_SENT, Notice.Status.FAILED])
    if clinic is not None:
        notices = notices.filter(clinic=clinic)
    return list(notices.select_related("patient", "order").order_by("-created_at", "-id")[:limit])


def notice_counts(*, clinic: Clinic | None) -> dict[str, int]:
    notices = Notice.objects.all() if clinic is None else Notice.objects.filter(clinic=clinic)
    return dict(Counter(notices.values_list("status", flat=True)))


def order_patients_overview(*, order: Order) -> list[dict]:
    """Per patient of the order: their lines, their notices (with messages) and their tracking link."""
    lines = list(order.lines.select_related("patient").order_by("patient__last_name", "patient__first_name", "id"))
    notices = (Notice.objects.filter(order=order)
               .prefetch_related(Prefetch("messages", queryset=Message.objects.order_by("created_at", "id")))
               .order_by("created_at", "id"))
    links = {link.patient_id: link for link in TrackingLink.objects.filter(order=order, revoked_at__isnull=True)}
    by_patient: dict[int, dict] = {}
    for line in lines:
        entry = by_patient.setdefault(line.patient_id, {"patient": line.patient, "lines": [], "notices": [],
                                                        "link": links.get(line.patient_id)})
        entry["lines"].append(line)
    for notice in notices:
        if notice.patient_id in by_patient:
            by_patient[notice.patient_id]["notices"].append(notice)
    return list(by_patient.values())
