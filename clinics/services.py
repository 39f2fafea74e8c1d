"""Clinic writes: the billing profile (the clinic's Stripe customer and its saved card)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from fizy.lib.payments import get_gateway

from .audit import Action, audit_record
from .models import Clinic, Membership


class BillingError(Exception):
    """A billing change that cannot be made; the message is readable by a clinic admin."""


class NotClinicAdmin(BillingError):
    pass


ONLY_ADMINS = "Only a clinic admin can change the clinic's card. Ask your clinic admin to do it on this page."


@dataclass(frozen=True)
class CardSetup:
    """A started card setup: what the browser needs to finish it."""

    setup_intent_id: str
    client_secret: str
    gateway_name: str
    test_cards: list[tuple[str, str]] = field(default_factory=list)  # sandbox only: (value, label)


def _require_clinic_admin(*, clinic: Clinic, actor) -> None:
    if not Membership.objects.filter(user=actor, clinic=clinic, role=Membership.Role.CLINIC_ADMIN).exists():
        raise NotClinicAdmin(ONLY_ADMINS)


def clinic_start_card_setup(*, clinic: Clinic, actor) -> CardSetup:
    """Make sure the clinic has a billing customer, then start a SetupIntent for a new card."""
    _require_clinic_admin(clinic=clinic, actor=actor)
    gateway = get_gateway()
    customer_id = clinic.stripe_customer_id
    if not customer_id:
        created = gateway.ensure_customer(
            name=f"{clinic.name} ({clinic.organization.name})", email=clinic.billing_email,
            metadata={"clinic_id": clinic.pk, "npi": clinic.npi}, idempotency_key=f"fizy-clinic-{clinic.pk}-customer",
        )
        with transaction.atomic(durable=True):
            locked = Clinic.objects.select_for_update(no_key=True).get(pk=clinic.pk)
            if not locked.stripe_customer_id:  # another admin may have been quicker
                locked.stripe_customer_id = created
                locked.save(update_fields=["stripe_customer_id"])
                audit_record(
                    action=Action.CLINIC_BILLING_CUSTOMER_CREATED, actor=actor, clinic=locked, obj=locked,
                    detail={"customer_id": created, "gateway": gateway.name},
                )
        clinic.stripe_customer_id = customer_id = locked.stripe_customer_id
    setup_intent_id, client_secret = gateway.create_setup_intent(customer_id=customer_id)
    card_choices = getattr(gateway, "card_choices", None)
    return CardSetup(
        setup_intent_id=setup_intent_id, client_secret=client_secret, gateway_name=gateway.name,
        test_cards=card_choices(setup_intent_id=setup_intent_id) if card_choices else [],
    )


def clinic_set_payment_method(*, clinic: Clinic, setup_intent_id: str, actor) -> Clinic:
    """Save the card a finished SetupIntent attached as the clinic's card for every order."""
    _require_clinic_admin(clinic=clinic, actor=actor)
    card = get_gateway().attach_result(setup_intent_id=setup_intent_id)  # outside any lock
    with transaction.atomic(durable=True):
        locked = Clinic.objects.select_for_update(no_key=True).get(pk=clinic.pk)
        if not locked.stripe_customer_id or card.customer_id != locked.stripe_customer_id:
            raise BillingError("This card setup does not belong to this clinic. Start the card setup again.")
        previous = {"brand": locked.card_brand, "last4": locked.card_last4}
        locked.payment_method_id = card.payment_method_id
        locked.card_brand = card.brand
        locked.card_last4 = card.last4
        locked.card_exp = card.exp
        locked.save(update_fields=["payment_method_id", "card_brand", "card_last4", "card_exp"])
        audit_record(
            action=Action.CLINIC_PAYMENT_METHOD_SET, actor=actor, clinic=locked, obj=locked,
            detail={"brand": card.brand, "last4": card.last4, "exp": card.exp, "previous": previous,
                    "setup_intent_id": setup_intent_id},
        )
    return locked
