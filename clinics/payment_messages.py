"""What coordinators and clinic admins read about a payment: a declined card, a gateway outage.

The payment gateway (``fizy.lib.payments``) reports codes and plain facts; the words that tell
a clinic what happened and what to do live here, next to the billing page that fixes the card.
"""

from __future__ import annotations

from fizy.lib.payments import REQUIRES_ACTION, Authorization, PaymentError

UPDATE_CARD = "Ask your clinic admin to update the card on the Billing page, then place the order again."

DECLINE_REASONS = {
    "insufficient_funds": "insufficient funds",
    "card_velocity_exceeded": "the card's spending limit was reached",
    "withdrawal_count_limit_exceeded": "the card's spending limit was reached",
    "expired_card": "the card has expired",
    "incorrect_cvc": "the security code is wrong",
    "incorrect_number": "the card number is wrong",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "pickup_card": "the card cannot be used",
    "restricted_card": "the card cannot be used",
    "fraudulent": "the bank suspects fraud",
    "do_not_honor": "the bank gave no reason",
    "generic_decline": "the bank gave no reason",
    "card_not_supported": "the card does not support this kind of purchase",
    "currency_not_supported": "the card does not support US dollars",
    "processing_error": "an error at the bank; trying again in a few minutes may work",
    "try_again_later": "a temporary problem at the bank; trying again in a few minutes may work",
}

# What to do after each kind of gateway failure.
_NEXT_STEP = {
    PaymentError.UNREACHABLE: "Nothing was charged twice; try again in a minute.",
    PaymentError.CREDENTIALS: "Contact Fizy support.",
    PaymentError.NOT_CONFIGURED: "Contact Fizy support.",
    PaymentError.CARD_NOT_SAVED: "Start the card setup again.",
}


def _card_words(last4: str) -> str:
    return f"The card ending {last4}" if last4 else "The clinic's card"


def decline_message(authorization: Authorization) -> str:
    """A sentence a coordinator understands, for a card the bank refused."""
    code, decline_code, last4 = authorization.code, authorization.decline_code, authorization.card_last4
    if "authentication_required" in (code, decline_code) or code == REQUIRES_ACTION:
        return (
            f"{_card_words(last4)} needs the cardholder to confirm each payment with their bank "
            f"(authentication required), which cannot happen while you order for patients. {UPDATE_CARD}"
        )
    reason = DECLINE_REASONS.get(decline_code) or DECLINE_REASONS.get(code) or "the bank gave no reason"
    return f"{_card_words(last4)} was declined by the bank ({reason}). {UPDATE_CARD}"


def payment_error_message(exc: PaymentError) -> str:
    """The gateway's failure, and what the reader can do about it."""
    next_step = _NEXT_STEP.get(exc.kind)
    return f"{exc.message} {next_step}" if next_step else exc.message
