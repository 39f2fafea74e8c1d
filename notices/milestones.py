"""Which line statuses patients hear about, and the plain words they read for each status.

A patient is told about five moments of their order (``Milestone``): the pharmacy received it,
it is delayed (on hold), it shipped, it was delivered, or it could not be filled. Every other
status only shows on the tracking page's timeline. Coordinators are emailed about rejections,
holds and cancellations.
"""

from fulfillment.models import OrderLine
from fulfillment.status import TRANSITIONS

from .models import Milestone

S = OrderLine.Status

MILESTONE_OF_STATUS: dict[str, str] = {
    S.SENT: Milestone.PLACED,
    S.ON_HOLD: Milestone.DELAYED,
    S.SHIPPED: Milestone.SHIPPED,
    S.DELIVERED: Milestone.DELIVERED,
    S.REJECTED: Milestone.NOT_FILLED,
    S.CANCELLED: Milestone.NOT_FILLED,
}
# Statuses that also tell the clinic's coordinators (batched per order).
ALERT_STATUSES = frozenset({S.REJECTED, S.ON_HOLD, S.CANCELLED})
# Nothing more will happen to a line in these statuses (delivered, rejected, cancelled).
FINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)

# What a patient reads for each status, on the tracking page's timeline. No clinical detail and
# no pharmacy reason: those stay between the pharmacy and the clinic.
PATIENT_WORDS: dict[str, str] = {
    S.PENDING: "Your clinic placed your order",
    S.SENT: "Your pharmacy received your order",
    S.ACCEPTED: "The pharmacy accepted your prescription",
    S.COMPOUNDING: "Being prepared",
    S.SHIPPED: "Shipped",
    S.DELIVERED: "Delivered",
    S.ON_HOLD: "Delayed: the pharmacy needs something from your clinic — your clinic has been told",
    S.REJECTED: "The pharmacy could not fill this — your clinic will contact you",
    S.CANCELLED: "Cancelled — your clinic will contact you",
    S.FAILED: "Delayed — your clinic has been told and is on it",
}
# The tone of the current status on the tracking page.
PATIENT_TONE = {S.SHIPPED: "ok", S.DELIVERED: "ok", S.ON_HOLD: "warning", S.FAILED: "warning",
                S.REJECTED: "error", S.CANCELLED: "error"}
