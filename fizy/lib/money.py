"""Money: dollars as ``Decimal`` with two places, the one place amounts are rounded and split.

Domain-free. Every amount Fizy stores or shows goes through here: rounding half up to the cent,
splitting a shared fee into shares that sum exactly, converting to the integer cents payment
gateways want, and the model field preset for money columns.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.core.validators import MinValueValidator
from django.db import models

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value) -> Decimal:
    """``value`` rounded half up to the cent: 1.005 → 1.01."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def split_evenly(amount: Decimal, parts: int) -> list[Decimal]:
    """``amount`` in ``parts`` shares that differ by at most one cent and sum exactly to it; the
    remainder cents go to the first shares."""
    cents = to_cents(amount)
    base, remainder = divmod(cents, parts)
    return [from_cents(base + (1 if i < remainder else 0)) for i in range(parts)]


def allocate(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """``amount`` in shares proportional to ``weights`` that sum exactly to it, to the cent (the
    largest remainders get the leftover cents; equal remainders go to the earlier weights).
    Zero weights get nothing unless every weight is zero, then the shares are even."""
    if not weights:
        return []
    total_weight = sum(weights, ZERO)
    if total_weight <= 0:
        return split_evenly(amount, len(weights))
    cents = to_cents(amount)
    exact = [Decimal(cents) * w / total_weight for w in weights]
    shares = [int(e) for e in exact]  # floor: weights and amount are not negative
    leftover = cents - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:leftover]:
        shares[i] += 1
    return [from_cents(c) for c in shares]


def to_cents(amount: Decimal) -> int:
    """Dollars (Decimal) to integer cents, as Stripe wants them."""
    return int((Decimal(amount) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def from_cents(cents: int | None) -> Decimal:
    return (Decimal(cents or 0) / 100).quantize(CENT)


def format_money(value) -> str:
    """Dollars with cents and thousands separators: 1234.5 → "$1,234.50"; None or "" → "—"."""
    if value is None or value == "":
        return "—"
    return f"${Decimal(value):,.2f}"


def MoneyField(verbose_name=None, **kwargs) -> models.DecimalField:  # noqa: N802 - reads like a field class
    """A money column: up to $9,999,999,999.99, never negative."""
    kwargs.setdefault("max_digits", 12)
    kwargs.setdefault("decimal_places", 2)
    kwargs.setdefault("validators", [MinValueValidator(ZERO)])
    return models.DecimalField(verbose_name, **kwargs)
