"""The SMS provider's calls to us: delivery status callbacks and patients' replies (STOP, START).

Both are form-encoded POSTs signed with ``X-Twilio-Signature`` (HMAC of the exact URL called and
the parameters, keyed with our auth token); an unsigned or wrongly signed request is refused
with 403 before anything is read into the database.
"""

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from fizy.lib.sms import signature_is_valid

from .consent import sms_reply_receive
from .delivery import message_record_delivery

SIGNATURE_HEADER = "X-Twilio-Signature"


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _signed(request) -> bool:
    """The provider signs the public URL it called: ours is SITE_URL (behind a proxy the request's
    own host and scheme may differ from it)."""
    url = settings.SITE_URL + request.get_full_path()
    return signature_is_valid(auth_token=settings.TWILIO_AUTH_TOKEN, url=url, params=request.POST,
                              signature=request.headers.get(SIGNATURE_HEADER, ""))


def _clean(value: str, limit: int) -> str:
    return value.replace("\x00", "").strip()[:limit]


@csrf_exempt
@require_POST
def twilio_status(request):
    if not _signed(request):
        return _text(f"Missing or invalid {SIGNATURE_HEADER}.", 403)
    sid = _clean(request.POST.get("MessageSid", ""), 64)
    status = _clean(request.POST.get("MessageStatus", ""), 20)
    if not sid or not status:
        return _text("MessageSid and MessageStatus are required.", 400)
    code = _clean(request.POST.get("ErrorCode", ""), 10)
    message = message_record_delivery(provider_id=sid, provider_status=status,
                                      error_code=int(code) if code.isascii() and code.isdigit() else None)
    return _text("Recorded." if message else "No message with this id here; ignored.", 200)


@csrf_exempt
@require_POST
def twilio_inbound(request):
    if not _signed(request):
        return _text(f"Missing or invalid {SIGNATURE_HEADER}.", 403)
    sid = _clean(request.POST.get("MessageSid", ""), 64)
    sender = _clean(request.POST.get("From", ""), 30)
    if not sid or not sender:
        return _text("MessageSid and From are required.", 400)
    sms_reply_receive(message_sid=sid, from_number=sender, body=_clean(request.POST.get("Body", ""), 1600),
                      opt_out_type=_clean(request.POST.get("OptOutType", ""), 10))
    # No reply of ours: the provider confirms STOP and START itself.
    return HttpResponse(str(MessagingResponse()), content_type="text/xml")
