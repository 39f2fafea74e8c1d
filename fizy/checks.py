"""System checks for a production deployment (``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Warning, register


@register("fizy", deploy=True)
def stripe_webhook_secret(app_configs, **kwargs):
    """With a Stripe key but no webhook signing secret, every Stripe event is refused: expired
    authorizations and captures made elsewhere would never reach our records."""
    if settings.PAYMENT_GATEWAY == "stripe" and settings.STRIPE_SECRET_KEY and not settings.STRIPE_WEBHOOK_SECRET:
        return [Warning(
            "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: every Stripe event would be refused, so "
            "expired authorizations and payments changed at Stripe would never reach Fizy's records.",
            hint="Register https://<host>/api/stripe/events in Stripe for the payment_intent.* events and set "
                 "STRIPE_WEBHOOK_SECRET to its signing secret (whsec_…).",
            id="fizy.W001",
        )]
    return []
