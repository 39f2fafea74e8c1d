"""The audit trail: one row per write that changes a patient's order (and the clinic's billing)."""

from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum

from .models import AuditEntry

# Who acts when there is no user: a clinic's API key (its name), set around a service call by
# :func:`acting_as`. Services keep taking ``actor=None``; their audit rows carry this label.
_acting_as: ContextVar[str] = ContextVar("audit_acting_as", default="")


@contextmanager
def acting_as(label: str):
    """Audit rows written inside this block without a user name ``label`` as their actor."""
    token = _acting_as.set(label)
    try:
        yield
    finally:
        _acting_as.reset(token)


class Action(StrEnum):
    """Every audited action, by name. The value is what ``AuditEntry.action`` stores."""

    CART_ADD = "cart.add"
    CART_ADD_MERGE = "cart.add.merge"
    CART_REFILL = "cart.refill"
    CART_REFILL_MERGE = "cart.refill.merge"
    CART_IMPORT = "cart.import"
    CART_IMPORT_MERGE = "cart.import.merge"
    CART_REORDER = "cart.reorder"
    CART_REORDER_MERGE = "cart.reorder.merge"
    CART_CHANGE = "cart.change"
    CART_ACKNOWLEDGE = "cart.acknowledge"
    CART_REMOVE = "cart.remove"
    ORDER_PLACE = "order.place"
    PRESCRIPTION_RECORD = "prescription.record"
    LINE_STATUS = "order_line.status_changed"
    LINE_CANCEL_REQUESTED = "order_line.cancel_requested"
    LINE_REROUTE = "order_line.rerouted"
    LINE_HOLD_ANSWER = "order_line.hold_answered"
    PARTNER_ORDER_SENT = "partner_order.sent"
    PARTNER_ORDER_DISPATCH_FAILED = "partner_order.dispatch_failed"
    PARTNER_ORDER_RETRY = "partner_order.retry_dispatch"
    PARTNER_ORDER_FOUND = "partner_order.found_by_lookup"
    ATTENTION_RESOLVE = "attention.resolve"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_CAPTURED = "payment.captured"
    PAYMENT_PARTIALLY_CAPTURED = "payment.partially_captured"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CHARGED = "payment.charged"
    PATIENT_CREATE = "patient.create"
    PATIENT_CHANGE = "patient.change"
    CLINIC_BILLING_CUSTOMER_CREATED = "clinic.billing_customer_created"
    CLINIC_PAYMENT_METHOD_SET = "clinic.payment_method_set"
    PATIENT_NOTICES_CONSENT = "patient.notices_consent"
    PATIENT_NOTICES_OPT_OUT = "patient.notices_opt_out"
    PATIENT_NOTICES_OPT_IN = "patient.notices_opt_in"
    TRACKING_LINK_REVOKE = "tracking_link.revoke"
    NOTICE_SETTINGS_CHANGE = "notices.settings_change"
    NOTICE_TEMPLATE_CHANGE = "notices.template_change"
    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    API_READ = "api.read"
    API_CART_READY = "api.cart_ready_for_review"
    API_WEBHOOK_SUBSCRIBE = "api.webhook_subscribe"
    API_WEBHOOK_UNSUBSCRIBE = "api.webhook_unsubscribe"
    API_WEBHOOK_RESEND = "api.webhook_resend"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_DECLINED = "approval.declined"
    APPROVAL_FAILED = "approval.failed"
    PARTNER_API_URL_CHANGE = "partner.api_url_changed"
    STAFF_ACCESS_CHANGE = "staff.access_changed"
    SECOND_FACTOR_ENROL = "account.second_factor_enrolled"
    SECOND_FACTOR_REMOVE = "account.second_factor_removed"
    RECOVERY_CODES_REPLACE = "account.recovery_codes_replaced"


def _entry(*, action, actor=None, actor_label="", clinic=None, patient=None, obj=None, detail=None) -> AuditEntry:
    authed = getattr(actor, "is_authenticated", False)
    return AuditEntry(
        action=Action(action).value,
        actor=actor if authed else None,
        actor_label=actor_label or ("" if authed else (_acting_as.get() or "system")),
        clinic=clinic,
        patient=patient,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        detail=detail or {},
    )


def audit_record(**fields) -> AuditEntry:
    """Write one audit row (keywords: action, actor, actor_label, clinic, patient, obj, detail).

    Call inside the service's transaction so the row and the change commit together. Never put
    prescription text (SIG, notes) in ``detail``."""
    entry = _entry(**fields)
    entry.save()
    return entry


def audit_record_many(entries: list[dict]) -> None:
    """Bulk form of :func:`audit_record` for services that touch many lines at once."""
    AuditEntry.objects.bulk_create([_entry(**e) for e in entries])
