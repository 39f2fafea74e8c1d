"""Who needs a second factor, and enrolling one: a TOTP authenticator app plus ten single-use
recovery codes (django-otp's TOTP and static devices)."""

import base64
import io

from django.db import transaction
from django.utils.crypto import salted_hmac
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinics.audit import Action, audit_record
from clinics.models import Membership

RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


def second_factor_required(user) -> bool:
    """Staff, superusers and clinic admins must use a second factor; anyone else who enrolled one
    must use it too (an optional factor that could be skipped would protect nothing)."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    if Membership.objects.filter(user=user, role=Membership.Role.CLINIC_ADMIN).exists():
        return True
    return has_second_factor(user)


def has_second_factor(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_enrolment_start(*, user) -> TOTPDevice:
    """The unconfirmed authenticator device the enrolment page shows (the same one on a reload)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def totp_enrolment_confirm(*, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm the device with a code from the app. Returns the ten new recovery codes (shown
    once), or None when the code is wrong. Any earlier authenticator and codes are replaced."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, confirmed=False)
        if not device.verify_token(token.strip()):
            return None
        TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(action=Action.SECOND_FACTOR_ENROL, actor=device.user, obj=device,
                     detail={"user": device.user.pk, "recovery_codes": RECOVERY_CODE_COUNT})
        return recovery_codes_replace(user=device.user)


def recovery_codes_renew(*, user) -> list[str]:
    """The user asked for a new set of recovery codes (:func:`recovery_codes_replace`). Audited."""
    with transaction.atomic():
        audit_record(action=Action.RECOVERY_CODES_REPLACE, actor=user, detail={"user": user.pk})
        return recovery_codes_replace(user=user)


def second_factor_remove(*, devices, actor) -> int:
    """A user admin removes authenticators or recovery-code sets (a lost phone: the user enrols
    again at their next login). One audit row per device, naming whose it was. Returns how many."""
    devices = list(devices)
    with transaction.atomic():
        for device in devices:
            audit_record(action=Action.SECOND_FACTOR_REMOVE, actor=actor, obj=device,
                         detail={"user": device.user_id, "device": device.name})
            device.delete()
    return len(devices)


def recovery_codes_replace(*, user) -> list[str]:
    """A new set of recovery codes; the old ones stop working. Only their digests are stored."""
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=recovery_code_digest(code)) for code in codes])
    return codes


def recovery_code_digest(code: str) -> str:
    """What the database keeps of a recovery code: a keyed digest (HMAC with SECRET_KEY), cut to
    the 16 characters django-otp's token column holds. A copy of the table gives no codes.
    Changing SECRET_KEY voids every recovery code (users make new ones under Two-factor)."""
    return salted_hmac("fizy.accounts.recovery-code", code, algorithm="sha256").hexdigest()[:16]


def verification_device(*, user, token: str):
    """The user's device that accepts ``token`` (an authenticator code or a recovery code, which
    is used up), or None. django-otp throttles repeated wrong codes per device."""
    token = "".join(token.split()).lower()
    if not token or len(token) > 16:
        return None
    devices = [*TOTPDevice.objects.filter(user=user, confirmed=True),
               *StaticDevice.objects.filter(user=user, confirmed=True)]
    # Six digits are an authenticator code; anything else can only be a recovery code.
    kind = TOTPDevice if token.isascii() and token.isdigit() and len(token) == 6 else StaticDevice
    with transaction.atomic():
        for device in devices:
            typed = recovery_code_digest(token) if kind is StaticDevice else token
            if isinstance(device, kind) and device.verify_token(typed):
                return device
    return None


def qr_code_data_uri(text: str) -> str:
    """An SVG QR code of ``text`` as a data: URI (an <img>, allowed by the CSP's img-src)."""
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def totp_secret(device: TOTPDevice) -> str:
    """The device's secret in base32, for typing into an app that cannot scan the QR code."""
    return base64.b32encode(device.bin_key).decode()
