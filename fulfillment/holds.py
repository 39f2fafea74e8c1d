"""Answer a hold in place: a coordinator sends the pharmacy holding a line some text and/or a
file (a signed prescription, a document), from the order page or Needs attention.

The file is checked by its content (PDF, JPEG or PNG, by magic bytes; at most 10 MB), stored
through Django's default storage, recorded as a :class:`~fulfillment.models.HoldAnswer` with an
audit row, and sent to the partner's API (``POST {api}/orders/{reference}/lines/{id}/responses``,
multipart; ``docs/partner-api.md``) with no transaction open. Once the partner has it, the line's
attention item is marked answered: the line shows "answered, waiting for the pharmacy" until the
partner moves it (then the item resolves as answered, ``fulfillment.attention``).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from clinics.audit import Action, audit_record

from .models import AttentionItem, HoldAnswer, OrderLine
from .partners import PartnerClient, PartnerError

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TEXT_CHARS = 4000
# What a file must start with to be taken for what it is (never trust the name or the browser's type).
MAGIC = (
    (b"%PDF-", "application/pdf", "PDF"),
    (b"\xff\xd8\xff", "image/jpeg", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
)


class HoldAnswerError(Exception):
    """The answer cannot be taken or sent; the message says why, in the coordinator's words."""


def file_type_of(head: bytes) -> str | None:
    """The content type of a file from its first bytes, if it is one we take."""
    for magic, content_type, _ in MAGIC:
        if head.startswith(magic):
            return content_type
    return None


def _check(*, line: OrderLine, text: str, upload) -> str:
    if line.status != OrderLine.Status.ON_HOLD:
        raise HoldAnswerError(f"{line.product_name} for {line.patient.full_name} is not on hold any more "
                              f"({line.get_status_display().lower()}): there is nothing to answer.")
    if not text and upload is None:
        raise HoldAnswerError("Write an answer or attach a file (PDF, JPEG or PNG).")
    if len(text) > MAX_TEXT_CHARS:
        raise HoldAnswerError(f"The answer is too long: at most {MAX_TEXT_CHARS} characters.")
    if not line.partner_order.partner_reference:
        raise HoldAnswerError("The pharmacy has not confirmed this order yet; try again in a moment.")
    if upload is None:
        return ""
    if upload.size > MAX_FILE_BYTES:
        raise HoldAnswerError(f"{upload.name} is {upload.size / 1024 / 1024:.1f} MB: files are at most 10 MB.")
    upload.seek(0)
    content_type = file_type_of(upload.read(16))
    upload.seek(0)
    if content_type is None:
        raise HoldAnswerError(f"{upload.name} is not a PDF, JPEG or PNG file (checked from its content).")
    return content_type


def line_answer_hold(*, line: OrderLine, actor, text: str = "", upload=None) -> HoldAnswer:
    """Send the pharmacy holding ``line`` an answer: ``text`` and/or ``upload`` (an UploadedFile).
    Raises :class:`HoldAnswerError` for an answer we cannot take or the partner did not take (the
    answer stays recorded as failed; sending again is safe)."""
    text = (text or "").strip()
    line = OrderLine.objects.select_related("order__clinic", "patient", "partner_order__partner").get(pk=line.pk)
    content_type = _check(line=line, text=text, upload=upload)
    with transaction.atomic():
        item = AttentionItem.objects.filter(line=line, audience=AttentionItem.Audience.CLINIC,
                                            resolved_at__isnull=True).first()
        answer = HoldAnswer(line=line, attention_item=item, text=text, answered_by=actor)
        if upload is not None:
            answer.file_name, answer.file_type, answer.file_size = upload.name[:200], content_type, upload.size
            answer.file.save(upload.name, upload, save=False)  # through the default storage
        answer.save()
        audit_record(action=Action.LINE_HOLD_ANSWER, actor=actor, clinic=line.order.clinic, patient=line.patient,
                     obj=line, detail={"answer_id": answer.pk, "order_id": line.order_id, "has_text": bool(text),
                                       "file_type": content_type, "file_size": answer.file_size})
    file = None
    if upload is not None:
        with answer.file.open("rb") as stored:
            file = (answer.file_name, stored.read(), content_type)
    partner_order = line.partner_order
    try:
        response_id = PartnerClient(partner_order.partner).answer_hold(
            reference=partner_order.partner_reference, line_id=line.pk, text=text, file=file,
            idempotency_key=f"fizy-hold-answer-{answer.pk}",
        )
    except PartnerError as exc:
        HoldAnswer.objects.filter(pk=answer.pk).update(status=HoldAnswer.Status.FAILED, error=exc.reason[:2000])
        raise HoldAnswerError(f"The answer could not be sent: {exc.reason}") from None
    now = timezone.now()
    with transaction.atomic():
        HoldAnswer.objects.filter(pk=answer.pk).update(status=HoldAnswer.Status.SENT, sent_at=now,
                                                       partner_response_id=response_id, error="")
        if item is not None:
            AttentionItem.objects.filter(pk=item.pk, resolved_at__isnull=True).update(answered_at=now)
    answer.refresh_from_db()
    return answer
