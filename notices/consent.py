"""Whether, and how, a patient may be told about their order: consent, channel, opt-out.

A patient gets notices only after the clinic recorded their agreement (``notices_consent_at``),
by the channel they chose (``contact_preference``), and never while they have asked to stop
(``notices_opted_out_at``): a STOP reply to one of our texts, or a request to the clinic. START
(or the clinic, at the patient's request) undoes it. Every change is audited.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from clinics.audit import Action, audit_record, audit_record_many
from clinics.models import Clinic, Patient
from fizy.lib.sms import mask_phone

from .models import Channel, SmsReply

P = Patient.ContactPreference
STOP_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


class ConsentError(Exception):
    """A consent change that cannot be made; the message says why."""


def notice_block_reason(patient: Patient) -> str:
    """Why the patient gets no notice now ('' when they may get one)."""
    if patient.notices_opted_out_at:
        return "The patient asked to stop order updates."
    if not patient.notices_consent_at:
        return "The patient's agreement to order updates is not recorded."
    if not patient.contact_preference:
        return "The patient chose no order updates."
    if not patient_channels(patient):
        return "No phone number or email on file for the patient's chosen way of contact."
    return ""


def patient_channels(patient: Patient) -> list[tuple[str, str]]:
    """[(channel, address)] the patient is reached on, per their preference. A patient who chose
    texts but has no phone number on file gets email, if they have one."""
    phone = patient.phone.as_e164 if patient.phone and patient.phone.is_valid() else ""
    wants_sms = patient.contact_preference in (P.SMS, P.SMS_AND_EMAIL)
    wants_email = patient.contact_preference in (P.EMAIL, P.SMS_AND_EMAIL) or (wants_sms and not phone)
    channels = []
    if wants_sms and phone:
        channels.append((Channel.SMS, phone))
    if wants_email and patient.email:
        channels.append((Channel.EMAIL, patient.email))
    return channels


def _check(patient: Patient, clinic: Clinic) -> None:
    if patient.organization_id != clinic.organization_id:
        raise ConsentError("That patient is not one of this clinic's patients.")


@transaction.atomic
def patient_set_notice_preferences(*, patient: Patient, clinic: Clinic, actor, contact_preference: str,
                                   consent: bool) -> Patient:
    """Record how the patient wants order updates and whether they agreed to them (a coordinator,
    from what the patient said). Taking consent back stops all notices."""
    _check(patient, clinic)
    if contact_preference not in P.values:
        raise ConsentError("Choose text, email, both, or no updates.")
    if consent and not contact_preference:
        raise ConsentError("Choose how the patient wants order updates, or untick their agreement.")
    if consent and contact_preference in (P.SMS, P.SMS_AND_EMAIL) and not patient.phone and not patient.email:
        raise ConsentError("Add the patient's phone number (or email) first: there is nowhere to send updates.")
    if consent and contact_preference == P.EMAIL and not patient.email:
        raise ConsentError("Add the patient's email first, or choose text messages.")
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    changed = []
    if locked.contact_preference != contact_preference:
        locked.contact_preference = contact_preference
        changed.append("contact_preference")
    if consent and locked.notices_consent_at is None:
        locked.notices_consent_at = timezone.now()
        changed.append("notices_consent_at")
    elif not consent and locked.notices_consent_at is not None:
        locked.notices_consent_at = None
        changed.append("notices_consent_at")
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
        audit_record(action=Action.PATIENT_NOTICES_CONSENT, actor=actor, clinic=clinic, patient=locked, obj=locked,
                     detail={"contact_preference": contact_preference, "consent": consent, "fields": changed})
    return locked


@transaction.atomic
def patient_set_opted_out(*, patient: Patient, clinic: Clinic, actor, opted_out: bool) -> Patient:
    """The patient told the clinic to stop (or to resume) order updates."""
    _check(patient, clinic)
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    if opted_out == (locked.notices_opted_out_at is not None):
        return locked
    locked.notices_opted_out_at = timezone.now() if opted_out else None
    locked.save(update_fields=["notices_opted_out_at", "updated_at"])
    audit_record(action=Action.PATIENT_NOTICES_OPT_OUT if opted_out else Action.PATIENT_NOTICES_OPT_IN, actor=actor,
                 clinic=clinic, patient=locked, obj=locked, detail={"source": "clinic"})
    return locked


def _by_phone(phone: str, *, opted_out: bool, label: str) -> int:
    """Opt every patient with this number out (or back in); how many changed. Audited."""
    patients = list(
        Patient.objects.select_for_update().filter(phone=phone, notices_opted_out_at__isnull=opted_out).order_by("pk")
    )
    if not patients:
        return 0
    Patient.objects.filter(pk__in=[p.pk for p in patients]).update(
        notices_opted_out_at=timezone.now() if opted_out else None, updated_at=timezone.now())
    audit_record_many([
        dict(action=Action.PATIENT_NOTICES_OPT_OUT if opted_out else Action.PATIENT_NOTICES_OPT_IN,
             actor_label=label, patient=p, obj=p, detail={"source": "sms"})
        for p in patients
    ])
    return len(patients)


@transaction.atomic
def patients_opt_out_by_phone(*, phone: str, label: str) -> int:
    return _by_phone(phone, opted_out=True, label=label)


def reply_keyword(*, body: str, opt_out_type: str = "") -> str:
    """What a patient's reply asks for. The provider's own reading (``OptOutType``) comes first."""
    kind = (opt_out_type or "").strip().upper()
    if kind in ("STOP", "START", "HELP"):
        return kind.lower()
    word = " ".join((body or "").strip().upper().split())
    if word in STOP_WORDS:
        return SmsReply.Keyword.STOP
    if word in START_WORDS:
        return SmsReply.Keyword.START
    if word in HELP_WORDS:
        return SmsReply.Keyword.HELP
    return SmsReply.Keyword.OTHER


def sms_reply_receive(*, message_sid: str, from_number: str, body: str, opt_out_type: str = "") -> SmsReply:
    """A patient texted back. STOP opts every patient with that number out of order updates,
    START opts them back in. A repeated delivery of the same reply changes nothing."""
    keyword = reply_keyword(body=body, opt_out_type=opt_out_type)
    existing = SmsReply.objects.filter(message_sid=message_sid).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            reply = SmsReply.objects.create(message_sid=message_sid, from_number=mask_phone(from_number), keyword=keyword)
            if keyword in (SmsReply.Keyword.STOP, SmsReply.Keyword.START):
                reply.patients = _by_phone(from_number, opted_out=keyword == SmsReply.Keyword.STOP,
                                           label=f"SMS reply {keyword.upper()}")
                reply.save(update_fields=["patients"])
            return reply
    except IntegrityError:  # the same reply, delivered twice at once
        return SmsReply.objects.get(message_sid=message_sid)
