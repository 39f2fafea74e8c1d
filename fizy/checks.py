"""System checks for a production deployment (``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Error, Warning, register


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


# What a dispatch attempt needs after its partner call: recording the answer in one transaction.
RECORDING_MARGIN_SECONDS = 10


@register("fizy")
def partner_deadline_within_task_timeout(app_configs, **kwargs):
    """A partner call must end before the queue kills the task running it: a task killed mid-call
    leaves its partner order "sending" until the reclaimer finds its lease expired."""
    timeout = int(settings.Q_CLUSTER.get("timeout") or 0)
    deadline = float(settings.PARTNER_ATTEMPT_DEADLINE)
    if timeout and deadline + RECORDING_MARGIN_SECONDS > timeout:
        return [Error(
            f"PARTNER_ATTEMPT_DEADLINE ({deadline:g} s) leaves less than {RECORDING_MARGIN_SECONDS} s before the "
            f"queue's task timeout (Q_TIMEOUT, {timeout} s): a slow partner would get dispatch killed mid-call.",
            hint=f"Set PARTNER_ATTEMPT_DEADLINE to at most {timeout - RECORDING_MARGIN_SECONDS} or raise Q_TIMEOUT.",
            id="fizy.E001",
        )]
    return []
