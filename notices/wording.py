"""The words of patient notices: safe defaults, each clinic's own templates, and their rendering.

A template is plain text with placeholders in braces, from a fixed list (:data:`PLACEHOLDERS`):
no template language, so a clinic admin's template can read nothing but these values. Texts
always end with the opt-out sentence; emails with a footer saying why the patient gets them.
Minimum necessary: ``{items}`` says "your order" unless the clinic allows product names in
messages; the tracking link carries the detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .models import Channel, Milestone

M = Milestone

PLACEHOLDERS: dict[str, str] = {
    "first_name": "The patient's first name.",
    "clinic": "Your clinic's name.",
    "clinic_phone": "The phone number patients call (or 'your clinic').",
    "link": "The patient's tracking page (always include it: it carries the detail).",
    "items": "'your order', or 'your order (product names)' when the clinic allows product names in messages.",
    "carrier": "The carrier(s) of a shipment, e.g. 'UPS'.",
    "tracking": "Carrier and tracking number with the carrier's tracking link (one per line).",
}
_PLACEHOLDER = re.compile(r"\{(\w*)\}")

SMS_FOOTER = " Reply STOP to opt out."
EMAIL_FOOTER = ("\n\n—\nYou get these updates because you agreed to them at {clinic}. To stop them, reply STOP to "
                "one of our texts or call {clinic_phone}.")
SMS_SOFT_LIMIT = 320  # two SMS segments; longer texts still go, in more parts

DEFAULTS: dict[tuple[str, str], tuple[str, str]] = {
    (M.PLACED, Channel.SMS): (
        "", "{clinic}: Hi {first_name}, the pharmacy has received {items}. Follow it here: {link}"),
    (M.DELAYED, Channel.SMS): (
        "", "{clinic}: Hi {first_name}, {items} is delayed: the pharmacy needs something from your clinic, and your "
            "clinic has been told. Details: {link}"),
    (M.SHIPPED, Channel.SMS): (
        "", "{clinic}: Hi {first_name}, {items} has shipped ({carrier}). Track it: {link}"),
    (M.DELIVERED, Channel.SMS): (
        "", "{clinic}: Hi {first_name}, {items} was delivered. Details: {link}"),
    (M.NOT_FILLED, Channel.SMS): (
        "", "{clinic}: Hi {first_name}, the pharmacy could not fill part of {items}. Your clinic will contact you. "
            "Details: {link}"),
    (M.PLACED, Channel.EMAIL): (
        "{clinic}: the pharmacy has received your order",
        "Hi {first_name},\n\nThe pharmacy has received {items} from {clinic}. We will tell you when it ships.\n\n"
        "Follow your order: {link}\n\nQuestions? Call {clinic_phone}."),
    (M.DELAYED, Channel.EMAIL): (
        "{clinic}: your order is delayed",
        "Hi {first_name},\n\nWe are sorry: {items} is delayed. The pharmacy needs something from your clinic, and "
        "your clinic has been told. You do not need to do anything now.\n\nFollow your order: {link}\n\n"
        "Questions? Call {clinic_phone}."),
    (M.SHIPPED, Channel.EMAIL): (
        "{clinic}: your order has shipped",
        "Hi {first_name},\n\nGood news: {items} has shipped with {carrier}.\n\n{tracking}\n\n"
        "Follow your order: {link}\n\nQuestions? Call {clinic_phone}."),
    (M.DELIVERED, Channel.EMAIL): (
        "{clinic}: your order was delivered",
        "Hi {first_name},\n\nThe carrier reports that {items} was delivered.\n\nDetails: {link}\n\n"
        "Questions? Call {clinic_phone}."),
    (M.NOT_FILLED, Channel.EMAIL): (
        "{clinic}: about your order",
        "Hi {first_name},\n\nThe pharmacy could not fill part of {items}. Your clinic will contact you about "
        "what happens next; you will not be charged for what was not filled.\n\nDetails: {link}\n\n"
        "Questions? Call {clinic_phone}."),
}

# What the preview shows in place of a real patient.
SAMPLE_VALUES = {
    "first_name": "Jordan", "link": "https://fizy.example/t/sample-link", "carrier": "UPS",
    "tracking": "UPS 1Z999AA10123456784: https://www.ups.com/track?tracknum=1Z999AA10123456784",
}
SAMPLE_PRODUCTS = ["Semaglutide 2.5 mg/mL, 2 mL vial"]


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def render(text: str, values: dict[str, str]) -> str:
    """Replace every ``{name}`` of :data:`PLACEHOLDERS` with its value; anything else stays as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)) if m.group(1) in PLACEHOLDERS else m.group(0), text)


def template_problems(*, channel: str, subject: str, body: str) -> list[str]:
    """What is wrong with a clinic's template, in words a clinic admin can act on."""
    problems = []
    for text in (subject, body):
        for name in _PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                problems.append(f"{{{name}}} is not a placeholder we can fill. Use one of: "
                                + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ".")
    if not body.strip():
        problems.append("The message cannot be empty.")
    if "{link}" not in body:
        problems.append("Include {link}: the tracking page is where the patient finds the detail.")
    if channel == Channel.EMAIL and not subject.strip():
        problems.append("An email needs a subject.")
    if channel == Channel.SMS and ("\n" in subject or subject.strip()):
        problems.append("Texts have no subject; leave it empty.")
    return list(dict.fromkeys(problems))


def items_phrase(*, product_names: list[str], allowed: bool) -> str:
    if not allowed or not product_names:
        return "your order"
    return "your order (" + ", ".join(dict.fromkeys(product_names)) + ")"


def compose(*, milestone: str, channel: str, values: dict[str, str], template=None) -> Rendered:
    """The message for ``milestone`` on ``channel``: the clinic's ``template`` (a NoticeTemplate)
    or the default, with the channel's footer."""
    subject, body = (template.subject, template.body) if template is not None else DEFAULTS[(milestone, channel)]
    if channel == Channel.SMS:
        return Rendered(subject="", body=render(body, values).strip() + SMS_FOOTER)
    return Rendered(subject=render(subject, values).replace("\n", " ").strip()[:200],
                    body=render(body + EMAIL_FOOTER, values).strip() + "\n")


def sms_segments(text: str) -> int:
    """How many SMS parts a text is sent in (GSM-7: 160, or 153 per part; otherwise 70 / 67)."""
    gsm = all(ord(c) < 128 for c in text)
    single, part = (160, 153) if gsm else (70, 67)
    return 1 if len(text) <= single else -(-len(text) // part)
