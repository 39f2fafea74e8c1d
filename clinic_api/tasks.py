"""django-q2 tasks of the clinic API. Each takes ids, re-reads, and is safe to run twice."""

import logging

log = logging.getLogger(__name__)


def deliver_webhook(delivery_id: int):
    from .webhooks import webhook_deliver

    return webhook_deliver(delivery_id=delivery_id)


def run_webhooks() -> dict:
    """Every minute: new line events into deliveries, then what is due and was not queued."""
    from .webhooks import webhooks_scan, webhooks_send_due

    return {"made": webhooks_scan(), "queued": webhooks_send_due()}


def send_review_request(review_request_id: int):
    from .review import review_request_notify

    return review_request_notify(review_request_id=review_request_id)
