"""The clinic's system says the cart is ready: the clinic's coordinators are emailed (counts and a
link, no patient names) and one of them reviews the cart and places the order in the browser."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from carts.selectors import CartReview
from clinics.audit import Action, audit_record
from notices.selectors import coordinator_emails

from .models import ApiKey, ReviewRequest


def cart_mark_ready(*, review: CartReview, api_key: ApiKey, note: str = "") -> ReviewRequest:
    clinic = review.cart.clinic
    with transaction.atomic():
        request = ReviewRequest.objects.create(clinic=clinic, cart_id=review.cart.pk, cart_version=review.cart.version,
                                               api_key=api_key, note=note.strip(), lines=len(review.lines))
        audit_record(action=Action.API_CART_READY, clinic=clinic, obj=request,
                     detail={"cart": review.cart.pk, "version": review.cart.version, "lines": len(review.lines)})
        transaction.on_commit(lambda: _enqueue(request.pk))
    return request


def _enqueue(pk: int) -> None:
    from django_q.tasks import async_task

    async_task("clinic_api.tasks.send_review_request", pk)


def review_request_notify(*, review_request_id: int) -> int:
    """Email the clinic's coordinators once; returns how many were emailed."""
    claimed = ReviewRequest.objects.filter(pk=review_request_id, recipients=0)
    request = claimed.select_related("clinic", "api_key").first()
    if request is None:
        return 0
    recipients = coordinator_emails(clinic=request.clinic)
    if not recipients:
        return 0
    n = request.lines
    who = request.api_key.name if request.api_key else "Your clinic's system"
    subject = f"{request.clinic.name}: the cart is ready for review ({n} line{'s' if n != 1 else ''})"
    body = (f"{who} filled the cart with {n} line{'s' if n != 1 else ''} and marked it ready for review.\n"
            + f"\nReview the cart and place the order: {settings.SITE_URL}{reverse('carts:cart')}\n")
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    ReviewRequest.objects.filter(pk=request.pk).update(recipients=len(recipients))
    return len(recipients)
