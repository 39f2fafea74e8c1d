"""django-q2 tasks of fulfillment. Each takes ids, re-reads, calls one service, and is safe to run twice."""

from .dispatch import partner_order_dispatch


def dispatch_partner_order(partner_order_id: int) -> str:
    """Send one partner order to its pharmacy (claimed: a second run, or a second worker, skips)."""
    return partner_order_dispatch(partner_order_id=partner_order_id)


def settle_order_payment(order_id: int):
    """Every line has its partner's final answer: capture the accepted lines, or cancel the
    authorization when none was accepted (``fulfillment.settlement``, imported here so a broken
    settlement module never blocks dispatch or webhooks)."""
    from .settlement import order_settle_payment

    return order_settle_payment(order_id=order_id)


def sandbox_play_step(sandbox_order_id: int, step: int, attempt: int = 1) -> int:
    """The sandbox partner pharmacy sends the webhooks of one step of its progression."""
    from .sandbox import sandbox_play_step as play

    return play(sandbox_order_id=sandbox_order_id, step=step, attempt=attempt)


def sandbox_release_hold(sandbox_order_id: int, line_id: int, number: int):
    """The sandbox partner pharmacy releases a hold the clinic answered."""
    from .sandbox import sandbox_release_hold as release

    return release(sandbox_order_id=sandbox_order_id, line_id=line_id, number=number)


def refund_order_line(line_id: int, actor_id: int | None = None):
    """A line will never be charged (rejected, cancelled, failed): give back its landed cost if it
    had been captured (settlement decides)."""
    from django.contrib.auth import get_user_model

    from .models import OrderLine
    from .settlement import order_line_refund

    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return order_line_refund(line=OrderLine.objects.get(pk=line_id), actor=actor)


def charge_order_line(line_id: int):
    """An accepted line that the order's authorization no longer covers: charge it on its own."""
    from .settlement import line_charge_follow_up

    return line_charge_follow_up(line_id=line_id)


def reroute_line(line_id: int):
    """A partner rejected the line for a reason of its own (stock, capability, capacity): send it
    to the next eligible partner (``fulfillment.reroute``). Safe to run twice: a line is rerouted once."""
    from .reroute import line_reroute_automatically

    new = line_reroute_automatically(line_id=line_id)
    return new.pk if new else None


def sweep_payments():
    """Every few minutes (a django-q2 schedule): captures at the safe age, follow-up charges,
    orphan authorizations released."""
    from .settlement import sweep_payments as sweep

    return sweep()


def purge_refused_webhook_requests() -> int:
    """Daily (a django-q2 schedule): delete refused webhook requests' metadata older than
    ``WEBHOOK_REFUSED_RETENTION_DAYS``. Returns how many rows went."""
    from .webhooks import refused_webhook_requests_purge

    return refused_webhook_requests_purge()


def reclaim_partner_orders() -> list[int]:
    """Every minute (``fulfillment.schedules``): queue again the partner orders a dead worker or a
    lost task left sending or queued."""
    from .dispatch import partner_orders_reclaim

    return partner_orders_reclaim()


def poll_partners() -> list[int]:
    """Every minute (a django-q2 schedule): queue a status poll of the partner orders with an
    overdue line, or any open line for partners that send no webhooks (``fulfillment.polling``)."""
    from .polling import partner_orders_poll_due

    return partner_orders_poll_due()


def poll_partner_order(partner_order_id: int) -> dict:
    """Ask the partner where this partner order's lines are and apply what changed (source "poll")."""
    from dataclasses import asdict

    from .polling import partner_order_poll

    return asdict(partner_order_poll(partner_order_id=partner_order_id))
