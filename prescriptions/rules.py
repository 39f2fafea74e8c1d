"""How long a prescription is valid and how many refills it may carry, by controlled-substance
schedule — and, where a state's rules differ, by the patient's state.

Defaults (federal rules, 21 CFR 1306.12 and 1306.22, and common pharmacy practice):

- not controlled: valid 1 year from the day it was written, at most 11 refills (a year of monthly fills);
- Schedule III–V: valid 6 months from the day it was written, at most 5 refills;
- Schedule II: no refills (a new prescription for each fill), valid 6 months here.

A state whose rules differ is configured with ``settings.PRESCRIPTION_STATE_RULES``:
``{"TX": {"II": {"valid_days": 21}}, "NY": {"": {"valid_days": 365, "max_refills": 5}}}`` — the key
is the product's schedule (``""`` not controlled, ``"II"``, ``"III"``, ``"IV"``, ``"V"``); a missing
key keeps the default.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Rule:
    valid_days: int
    max_refills: int


DEFAULT_RULES: dict[str, Rule] = {
    "": Rule(valid_days=365, max_refills=11),
    "II": Rule(valid_days=183, max_refills=0),
    "III": Rule(valid_days=183, max_refills=5),
    "IV": Rule(valid_days=183, max_refills=5),
    "V": Rule(valid_days=183, max_refills=5),
}


def rule_for(*, schedule: str, state: str = "") -> Rule:
    """The rule for a product of ``schedule`` prescribed for a patient in ``state``."""
    rule = DEFAULT_RULES.get(schedule or "", DEFAULT_RULES[""])
    override = (getattr(settings, "PRESCRIPTION_STATE_RULES", None) or {}).get(state or "", {}).get(schedule or "")
    if override:
        rule = Rule(valid_days=override.get("valid_days", rule.valid_days),
                    max_refills=override.get("max_refills", rule.max_refills))
    return rule


def default_expiry(*, written_on: datetime.date, schedule: str, state: str = "") -> datetime.date:
    return written_on + datetime.timedelta(days=rule_for(schedule=schedule, state=state).valid_days)
