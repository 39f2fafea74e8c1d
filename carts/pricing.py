"""What the cart costs the clinic: each routed line's landed cost (pass-through drug price and its
share of the shipping), the disclosed platform fee as its own line, and the total that one
payment authorizes. The fee is spread over the lines in proportion to their landed cost, to the
cent, so that a line accepted or refunded alone carries exactly its share."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from clinics.models import Clinic
from fizy.lib.money import ZERO, allocate
from routing.engine import RoutingDecision


@dataclass(frozen=True)
class CartPrice:
    drugs: Decimal  # landed costs of the routed lines, shipping included
    fee: Decimal
    fee_shares: dict[int, Decimal] = field(default_factory=dict)  # line id -> its share of the fee
    landed: dict[int, Decimal] = field(default_factory=dict)  # line id -> landed cost

    @property
    def total(self) -> Decimal:
        return self.drugs + self.fee

    def line_price(self, line_id: int) -> Decimal:
        return self.landed[line_id] + self.fee_shares.get(line_id, ZERO)


def cart_price(*, clinic: Clinic, decisions: dict[int, RoutingDecision]) -> CartPrice:
    """The price of the routed lines of ``decisions`` (unrouted lines cost nothing yet)."""
    routed = sorted((d for d in decisions.values() if d.routed), key=lambda d: d.line_id)
    landed = {d.line_id: d.landed_cost for d in routed}
    drugs = sum(landed.values(), ZERO)
    fee = clinic.organization.platform_fee(drugs)
    shares = allocate(fee, [d.landed_cost for d in routed])
    return CartPrice(drugs=drugs, fee=fee, fee_shares=dict(zip(landed, shares, strict=True)), landed=landed)
