"""The patient's tracking page: the link, its validity, what the page shows, and who opened it.

The link's token is a random nonce signed with the site's key (``django.core.signing``): it
cannot be guessed or altered, and the clinic can revoke it (a revoked link shows nothing; the
next notice carries a new one). A link works until ``link_valid_days`` after the patient's last
line in the order is final. The page shows the minimum a patient needs: first name and last
initial, the clinic's name and phone, each of their lines' product (unless the clinic hides it),
a plain-words timeline, the carrier's link and an expected date; never a date of birth, a street
address, a price, a prescriber, directions or another patient.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from clinics.audit import Action, audit_record
from clinics.models import Clinic
from fulfillment.models import LineEvent, Order, OrderLine
from fulfillment.selectors import tracking_url

from .milestones import FINAL, PATIENT_TONE, PATIENT_WORDS
from .models import NoticeSettings, TrackingAccess, TrackingLink

SALT = "notices.tracking-link"
S = OrderLine.Status
Outcome = TrackingAccess.Outcome

# Rate limits per client address and per link, in a fixed window (the cache is shared by the
# web workers when CACHE_URL points at one). The page's own refresh uses 4 a minute.
WINDOW_SECONDS = 600
LIMIT_PER_ADDRESS = 120
LIMIT_PER_LINK = 120
LIMIT_FAILURES_PER_ADDRESS = 20  # wrong links: makes guessing pointless
DELIVERY_ESTIMATE_BUSINESS_DAYS = 3


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT, sep=".")


def link_token(link: TrackingLink) -> str:
    return _signer().sign(link.nonce)


def link_url(link: TrackingLink) -> str:
    return settings.SITE_URL + reverse("notices:track", args=[link_token(link)])


def tracking_link_for(*, order_id: int, patient_id: int) -> TrackingLink:
    """The patient's live link for the order, made on first use."""
    link = TrackingLink.objects.filter(order_id=order_id, patient_id=patient_id, revoked_at__isnull=True).first()
    if link is not None:
        return link
    try:
        with transaction.atomic():
            return TrackingLink.objects.create(order_id=order_id, patient_id=patient_id, nonce=secrets.token_urlsafe(18))
    except IntegrityError:  # made at the same moment by another worker
        return TrackingLink.objects.get(order_id=order_id, patient_id=patient_id, revoked_at__isnull=True)


@transaction.atomic
def tracking_link_revoke(*, link: TrackingLink, clinic: Clinic, actor) -> TrackingLink:
    """The clinic withdraws a link: it shows nothing from now on. The patient's next notice
    carries a new one."""
    if link.order.clinic_id != clinic.pk:
        raise PermissionError("That link belongs to another clinic's order.")
    updated = TrackingLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=actor if getattr(actor, "is_authenticated", False) else None)
    if updated:
        audit_record(action=Action.TRACKING_LINK_REVOKE, actor=actor, clinic=clinic, patient=link.patient, obj=link,
                     detail={"order_id": link.order_id})
    link.refresh_from_db()
    return link


# --- opening a link ------------------------------------------------------------------------------


def address_hash(address: str) -> str:
    """A keyed hash of the client's address: tells repeat visits apart without keeping the address."""
    return hmac.new(settings.SECRET_KEY.encode(), (address or "").encode(), hashlib.sha256).hexdigest()[:16]


def _count(key: str) -> int:
    cache.add(key, 0, WINDOW_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW_SECONDS)
        return 1


def over_rate_limit(*, ip_hash: str, token: str) -> bool:
    """Count this request; True when its address or its link is over the limit."""
    token_key = hashlib.sha256(token.encode()).hexdigest()[:24]
    by_address = _count(f"notices:track:ip:{ip_hash}")
    by_link = _count(f"notices:track:link:{token_key}")
    failures = cache.get(f"notices:track:fail:{ip_hash}", 0)
    return by_address > LIMIT_PER_ADDRESS or by_link > LIMIT_PER_LINK or failures >= LIMIT_FAILURES_PER_ADDRESS


def _count_failure(ip_hash: str) -> None:
    _count(f"notices:track:fail:{ip_hash}")


def link_expires_at(*, link: TrackingLink, lines: list[OrderLine], valid_days: int) -> datetime.datetime | None:
    """When the link stops working: ``valid_days`` after the patient's last line became final;
    None while a line can still change."""
    if not lines or any(line.status not in FINAL for line in lines):
        return None
    last = max((line.status_changed_at or link.created_at) for line in lines)
    return last + datetime.timedelta(days=valid_days)


def notice_settings_for(clinic: Clinic) -> NoticeSettings:
    found = NoticeSettings.objects.filter(clinic=clinic).first()
    return found or NoticeSettings(clinic=clinic)


@dataclass
class TimelineStep:
    status: str
    words: str
    at: datetime.datetime | None


@dataclass
class PatientLine:
    label: str
    status: str
    words: str
    tone: str
    carrier: str = ""
    tracking_number: str = ""
    tracking_url: str = ""
    expected: datetime.date | None = None
    steps: list[TimelineStep] = field(default_factory=list)


@dataclass
class TrackingPage:
    """Everything the page shows, and nothing else (the template gets only this)."""

    outcome: str
    link: TrackingLink | None = None
    clinic_name: str = ""
    clinic_phone: str = ""
    patient_name: str = ""
    ships_to: str = ""
    order_date: datetime.date | None = None
    lines: list[PatientLine] = field(default_factory=list)
    final: bool = False


def _add_business_days(day: datetime.date, n: int) -> datetime.date:
    while n:
        day += datetime.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def _patient_line(line: OrderLine, events: list[LineEvent], placed_at, label: str, tz) -> PatientLine:
    steps = [TimelineStep(S.PENDING, PATIENT_WORDS[S.PENDING], placed_at)]
    steps += [TimelineStep(e.to_status, PATIENT_WORDS.get(e.to_status, ""), e.at) for e in events if e.to_status != S.PENDING]
    result = PatientLine(label=label, status=line.status, words=PATIENT_WORDS.get(line.status, ""),
                         tone=PATIENT_TONE.get(line.status, ""), steps=steps)
    if line.status in (S.SHIPPED, S.DELIVERED) and line.tracking_number:
        result.carrier, result.tracking_number = line.carrier, line.tracking_number
        result.tracking_url = tracking_url(line.carrier, line.tracking_number)
    if line.status == S.SHIPPED:
        shipped_at = next((e.at for e in reversed(events) if e.to_status == S.SHIPPED), line.status_changed_at)
        if shipped_at:
            result.expected = _add_business_days(shipped_at.astimezone(tz).date(), DELIVERY_ESTIMATE_BUSINESS_DAYS)
        carrier = f" — {line.carrier} {line.tracking_number}".rstrip() if line.tracking_number else ""
        result.words = f"Shipped{carrier}"
    return result


def tracking_page_for_token(token: str, *, now: datetime.datetime | None = None) -> TrackingPage:
    """Resolve ``token`` and gather the page. Every failure is the same empty page with its outcome."""
    now = now or timezone.now()
    try:
        nonce = _signer().unsign(token)
    except signing.BadSignature:
        return TrackingPage(outcome=Outcome.INVALID)
    link = TrackingLink.objects.select_related("order__clinic", "patient").filter(nonce=nonce).first()
    if link is None:
        return TrackingPage(outcome=Outcome.INVALID)
    if link.revoked_at is not None:
        return TrackingPage(outcome=Outcome.REVOKED, link=link)
    order: Order = link.order
    clinic = order.clinic
    notice_settings = notice_settings_for(clinic)
    lines = list(
        OrderLine.objects.filter(order=order, patient_id=link.patient_id).select_related("product").order_by("id")
    )
    expires = link_expires_at(link=link, lines=lines, valid_days=notice_settings.link_valid_days)
    if not lines or (expires is not None and now >= expires):
        return TrackingPage(outcome=Outcome.EXPIRED, link=link)
    events: dict[int, list[LineEvent]] = {}
    for event in LineEvent.objects.filter(line__in=lines, applied=True).order_by("at", "id").only(
            "line_id", "to_status", "at"):
        events.setdefault(event.line_id, []).append(event)
    tz = ZoneInfo(clinic.timezone)
    patient = link.patient
    shown = []
    for number, line in enumerate(lines, start=1):
        product = f"{line.product.name} {line.product.strength}".strip()
        label = product if notice_settings.show_products_on_page else f"Item {number}"
        shown.append(_patient_line(line, events.get(line.pk, []), order.placed_at, label, tz))
    address = (lines[0].patient_snapshot or {}).get("address") or {}
    ships_to = ", ".join(p for p in (address.get("city", ""), address.get("state", "")) if p)
    return TrackingPage(
        outcome=Outcome.SHOWN, link=link, clinic_name=clinic.name, clinic_phone=notice_settings.phone_for_patients(),
        patient_name=f"{patient.first_name} {patient.last_name[:1]}.".strip(), ships_to=ships_to,
        order_date=order.placed_at.astimezone(tz).date(), lines=shown, final=expires is not None,
    )


def tracking_access_record(*, page: TrackingPage, ip_hash: str, refresh: bool) -> TrackingAccess:
    if page.outcome == Outcome.INVALID:
        _count_failure(ip_hash)
    return TrackingAccess.objects.create(link=page.link, outcome=page.outcome, ip_hash=ip_hash, refresh=refresh)
