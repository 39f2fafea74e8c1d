"""The money invariant, checked from the records (``python manage.py check_money``).

For every order:

1. The payment events are the ledger: captured + follow-up charges − refunds recorded as events
   equal the order's own totals (``amount_captured + amount_charged_later − amount_refunded``)
   and the sum over its lines of what each was charged minus what it got back.
2. Each line owes what its status says: an accepted (or later) line is charged its price
   (landed cost + fee share) — or is still covered by a live authorization — unless finance staff
   refunded it with a reason; a rejected, cancelled or failed line has nothing charged net; a line
   still waiting (pending, sent, on hold) has either nothing or its price.
3. Nothing captured beyond what was authorized; the lines' fee shares add up to the order's fee.

A violation names the order and the line (ids, product) and what is wrong; never a patient.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from fizy.lib.money import ZERO

from .models import Order, OrderLine, PaymentEvent
from .settlement import authorization_is_live
from .status import CHARGEABLE, NEVER_CHARGED

Kind = PaymentEvent.Kind
IN = (Kind.CAPTURED, Kind.PARTIALLY_CAPTURED, Kind.CHARGED)


@dataclass(frozen=True)
class Violation:
    order_number: str
    line_id: int | None
    problem: str

    def __str__(self):
        where = f"{self.order_number} line {self.line_id}" if self.line_id else self.order_number
        return f"{where}: {self.problem}"


def _ledger(order_ids: list[int]) -> dict[int, Decimal]:
    sums: dict[int, Decimal] = defaultdict(lambda: ZERO)
    rows = (PaymentEvent.objects.filter(order_id__in=order_ids, kind__in=[*IN, Kind.REFUNDED])
            .values("order_id", "kind").annotate(total=Sum("amount")))
    for row in rows:
        sums[row["order_id"]] += row["total"] if row["kind"] in IN else -row["total"]
    return sums


def money_violations(*, orders=None, now: datetime.datetime | None = None) -> list[Violation]:
    """Every violation of the invariant among ``orders`` (a queryset; all orders by default), in a
    fixed number of queries per 500 orders."""
    now = now or timezone.now()
    orders = orders if orders is not None else Order.objects.all()
    violations: list[Violation] = []
    ids = list(orders.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        ledger = _ledger(chunk)
        finance = set(PaymentEvent.objects.filter(order_id__in=chunk, kind=Kind.REFUNDED, payload__finance=True)
                      .values_list("line_id", flat=True))
        lines_by_order: dict[int, list[OrderLine]] = defaultdict(list)
        for line in OrderLine.objects.filter(order_id__in=chunk).only(
            "pk", "order_id", "status", "product_name", "landed_cost", "fee_share", "amount_charged", "amount_refunded",
        ):
            lines_by_order[line.order_id].append(line)
        for order in Order.objects.filter(pk__in=chunk).order_by("pk"):
            violations += _order_violations(order, lines_by_order[order.pk], ledger[order.pk], finance, now)
    return violations


def _order_violations(order: Order, lines: list[OrderLine], ledger: Decimal, finance: set[int], now) -> list[Violation]:
    out: list[Violation] = []

    def bad(problem: str, line: OrderLine | None = None):
        out.append(Violation(order.number, line.pk if line else None, problem))

    own = order.amount_captured + order.amount_charged_later - order.amount_refunded
    if ledger != own:
        bad(f"the payment events add up to ${ledger:,} but the order's totals to ${own:,}")
    by_lines = sum((line.amount_charged - line.amount_refunded for line in lines), ZERO)
    if ledger != by_lines:
        bad(f"the payment events add up to ${ledger:,} but its lines were charged ${by_lines:,} net")
    if order.amount_captured > order.amount_authorized:
        bad(f"captured ${order.amount_captured:,}, more than the ${order.amount_authorized:,} authorized")
    fee = sum((line.fee_share for line in lines), ZERO)
    if fee != order.fee:
        bad(f"the lines' fee shares add up to ${fee:,}, not the order's ${order.fee:,} fee")
    live = authorization_is_live(order, now=now)
    for line in lines:
        net, price = line.amount_charged - line.amount_refunded, line.landed_cost + line.fee_share
        what = f"({line.product_name}, {line.get_status_display().lower()})"
        if line.status in CHARGEABLE:
            if net == price or line.pk in finance:
                continue
            if net == ZERO and live:
                continue  # the authorization still covers it; settlement captures it
            if net == ZERO:
                bad(f"{what} is owed ${price:,} but has neither a live authorization nor a charge", line)
            else:
                bad(f"{what} costs ${price:,} but ${net:,} was charged net", line)
        elif line.status in NEVER_CHARGED:
            if net != ZERO:
                bad(f"{what} will never be charged but ${net:,} was kept", line)
        elif net not in (ZERO, price):
            bad(f"{what} costs ${price:,} but ${net:,} was charged net", line)
    return out
