"""The routing engine: which partner pharmacy fills each cart line, and what the line costs.

Choosing a partner
------------------
A partner is *eligible* for a line when all of these hold:

- the partner is active;
- it has an order API URL (a new partner's first URL waits for a second approver: until then
  Fizy cannot send it an order);
- it has an active offering of the line's product;
- it holds a ``PartnerStateLicense`` for the patient's ship-to state that has not expired;
- the offering's ``stock_quantity`` is at least the line's quantity.

Active routing rules are tried by ascending priority (then id). The first rule whose conditions
match the line (product, patient ship-to state, organization, clinic; a blank condition matches
anything) *and* whose target partner is eligible wins. A matching rule whose partner is not
eligible is skipped, and the decision says why ("rule 'X' skipped: Cedar is not licensed in TX").
Without a winning rule the line goes to the cheapest eligible partner, comparing
``unit_price × quantity + that offering's full shipping_fee`` (shares are not known yet); ties go
to the partner whose name sorts first. Its reason is written once the shipping shares are known,
with the costs as the line shows them: the chosen partner's landed cost (its share of the
shipment included) against what the line would cost at each other eligible partner, joining this
patient's shipment there if there is one. With no eligible partner the decision has ``partner=None``
and the reason lists, for every partner carrying the product, why it cannot fill the line.

Landed cost
-----------
``landed_cost = unit_price × quantity + shipping_share``.

A partner ships all of one patient's lines in one package, so the lines of a cart routed to the
same partner for the same patient form one *shipment*. The shipment's fee is the highest
``shipping_fee`` among its lines' offerings. The fee is split evenly across the shipment's lines
in cents; the remainder cents go to the first lines (in the order the lines were given), so the
shares always sum exactly to the fee. A single-line shipment carries the whole fee. Money is
``Decimal`` with two places throughout; no floats.

Queries
-------
``route_lines`` runs a fixed number of queries whatever the number of lines: patients and products
it was not handed through ``select_related`` (one query each, skipped when all are cached), the
offerings of the products with their partners, the partners' licenses in the states concerned,
and the candidate rules. The engine never writes.

This module must not import ``carts``: lines are duck-typed (``pk``, ``patient_id``,
``product_id``, ``quantity``, optionally cached ``patient`` / ``product``).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from django.db.models import Q
from django.utils import timezone

from catalog.models import Offering, Partner, PartnerStateLicense, Product
from clinics.models import Clinic, Patient
from fizy.lib.money import ZERO, format_money, money, split_evenly

from .models import RoutingRule

@dataclass
class RoutingDecision:
    """Where one line goes, what it costs, and why.

    ``reason`` is one human-readable sentence with its details (stored on the order line at
    checkout); ``headline`` is its first part alone ("rule 'X'", "cheapest eligible: …");
    ``skipped_rules`` and ``ineligible`` are the details, one string each.
    ``available_stock`` is set only when stock alone prevented routing: the most units any
    otherwise-eligible partner has (``stock_partner``)."""

    line_id: int | None
    partner: Partner | None
    offering: Offering | None
    rule: RoutingRule | None
    unit_price: Decimal | None
    shipping_share: Decimal
    landed_cost: Decimal | None
    reason: str
    ineligible: list[str] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)
    available_stock: int | None = None
    stock_partner: Partner | None = None
    headline: str = ""
    patient_id: int | None = None
    state: str = ""
    quantity: int = 0
    alternatives: list[Offering] = field(default_factory=list)  # the other eligible offerings, when chosen by cost

    @property
    def routed(self) -> bool:
        return self.partner is not None


class PartnerSubtotal(NamedTuple):
    partner: Partner
    subtotal: Decimal


@dataclass(frozen=True)
class CartTotals:
    """What the cart page shows under the lines."""

    subtotals: list[PartnerSubtotal]
    shipping: Decimal
    total: Decimal
    unrouted_line_ids: list[int]


# --- what the engine needs to know about a line --------------------------------------------------


@dataclass(frozen=True)
class _Need:
    line_id: int | None
    patient_id: int | None
    product: Product
    state: str
    quantity: int


@dataclass
class _World:
    """Everything fetched for one routing pass."""

    offerings: dict[int, list[Offering]]  # product id → offerings (any status), partner loaded
    licenses: dict[tuple[int, str], PartnerStateLicense]
    rules: list[RoutingRule]
    clinic_id: int | None
    organization_id: int | None
    today: datetime.date


def _cached_related(line, name: str):
    """The related object if the caller loaded it (select_related / assignment), else None.
    Never triggers a query."""
    descriptor = getattr(type(line), name, None)
    if hasattr(descriptor, "is_cached"):
        return getattr(line, name) if descriptor.is_cached(line) else None
    return getattr(line, name, None)


def _related_by_id(lines: list, name: str, model) -> dict:
    found, missing = {}, set()
    for line in lines:
        obj = _cached_related(line, name)
        if obj is not None:
            found[obj.pk] = obj
        else:
            missing.add(getattr(line, f"{name}_id"))
    if missing:
        found.update(model._default_manager.in_bulk(missing))
    return found


def _load_world(needs: list[_Need], *, clinic: Clinic | None, today: datetime.date,
                exclude_partner_ids: Collection[int] = ()) -> _World:
    product_ids = {need.product.pk for need in needs}
    states = {need.state for need in needs if need.state}
    offerings: dict[int, list[Offering]] = defaultdict(list)
    found = Offering.objects.filter(product_id__in=product_ids).exclude(partner_id__in=list(exclude_partner_ids))
    for offering in found.select_related("partner"):
        offerings[offering.product_id].append(offering)
    partner_ids = {o.partner_id for group in offerings.values() for o in group}
    licenses = {
        (lic.partner_id, lic.state): lic
        for lic in PartnerStateLicense.objects.filter(partner_id__in=partner_ids, state__in=states)
    } if partner_ids and states else {}
    rules = (RoutingRule.objects.filter(active=True).filter(Q(product__isnull=True) | Q(product_id__in=product_ids))
             .exclude(partner_id__in=list(exclude_partner_ids)))
    if clinic is None:
        rules = rules.filter(clinic__isnull=True, organization__isnull=True)
    else:
        rules = rules.filter(Q(clinic__isnull=True) | Q(clinic_id=clinic.pk)).filter(
            Q(organization__isnull=True) | Q(organization_id=clinic.organization_id)
        )
    return _World(
        offerings=offerings,
        licenses=licenses,
        rules=list(rules.select_related("partner").order_by("priority", "id")),
        clinic_id=clinic.pk if clinic else None,
        organization_id=clinic.organization_id if clinic else None,
        today=today,
    )


# --- eligibility ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    offering: Offering | None
    problems: list[str]  # sentences naming the partner; empty when eligible
    only_stock: bool  # the single problem is stock

    @property
    def eligible(self) -> bool:
        return not self.problems


def _check(partner: Partner, offering: Offering | None, need: _Need, world: _World) -> _Check:
    if offering is None:
        return _Check(None, [f"{partner.name} does not carry {need.product}"], False)
    problems, stock_problem = [], False
    if not partner.active:
        problems.append(f"{partner.name} is inactive")
    if not partner.api_base_url:
        problems.append(f"{partner.name} has no order API URL yet "
                        "(one takes effect once a second staff member approves it)")
    if not offering.active:
        problems.append(f"{partner.name}'s offering of {need.product.name} is inactive")
    state_license = world.licenses.get((partner.pk, need.state))
    if state_license is None:
        problems.append(f"{partner.name} is not licensed in {need.state}")
    elif not state_license.is_active(world.today):
        problems.append(f"{partner.name}'s {need.state} license expired on {state_license.expires_on:%Y-%m-%d}")
    if offering.stock_quantity < need.quantity:
        stock_problem = True
        problems.append(f"{partner.name} is out of stock (has {offering.stock_quantity}, needs {need.quantity})")
    return _Check(offering, problems, stock_problem and len(problems) == 1)


def _comparable_cost(offering: Offering, quantity: int) -> Decimal:
    return money(offering.unit_price * quantity + offering.shipping_fee)


# --- deciding ------------------------------------------------------------------------------------


def _decide(need: _Need, world: _World) -> RoutingDecision:
    def decision(partner=None, offering=None, rule=None, *, headline, reason=None, **extra) -> RoutingDecision:
        return RoutingDecision(
            line_id=need.line_id, partner=partner, offering=offering, rule=rule,
            unit_price=offering.unit_price if offering else None, shipping_share=ZERO, landed_cost=None,
            reason=reason or headline, headline=headline,
            patient_id=need.patient_id, state=need.state, quantity=need.quantity, **extra,
        )

    if not need.state:
        return decision(headline="cannot route: the patient's ship-to state is missing")

    carried = {o.partner_id: o for o in world.offerings.get(need.product.pk, [])}
    checks = {pid: _check(o.partner, o, need, world) for pid, o in carried.items()}
    ineligible = [
        "; ".join(c.problems)
        for c in sorted(checks.values(), key=lambda c: (c.offering.partner.name, c.offering.partner_id))
        if not c.eligible
    ]

    skipped = []
    for rule in world.rules:
        if not rule.matches(product_id=need.product.pk, state=need.state,
                            clinic_id=world.clinic_id, organization_id=world.organization_id):
            continue
        check = checks.get(rule.partner_id) or _check(rule.partner, None, need, world)
        if check.eligible:
            headline = f"rule '{rule.name}'"
            return decision(
                rule.partner, check.offering, rule, headline=headline,
                reason=f"{headline} (after " + "; ".join(skipped) + ")" if skipped else headline,
                ineligible=ineligible, skipped_rules=skipped,
            )
        skipped.append(f"rule '{rule.name}' skipped: " + "; ".join(check.problems))

    eligible = sorted(
        (c.offering for c in checks.values() if c.eligible),
        key=lambda o: (_comparable_cost(o, need.quantity), o.partner.name, o.partner_id),
    )
    if eligible:
        best, others = eligible[0], eligible[1:]
        # The headline is written by _describe_costs once the shipping shares are known.
        return decision(best.partner, best, None, headline="", ineligible=ineligible, skipped_rules=skipped,
                        alternatives=others)

    if not carried:
        headline = f"no eligible partner: no partner carries {need.product}"
        reason = headline
    else:
        headline = f"no eligible partner for {need.quantity} × {need.product.name} to {need.state}"
        reason = f"{headline}: " + "; ".join(ineligible)
    stock_limited = sorted((c.offering for c in checks.values() if c.only_stock),
                           key=lambda o: (-o.stock_quantity, o.partner.name))
    return decision(
        headline=headline, reason=reason, ineligible=ineligible, skipped_rules=skipped,
        available_stock=stock_limited[0].stock_quantity if stock_limited else None,
        stock_partner=stock_limited[0].partner if stock_limited else None,
    )


def _apply_shipping_shares(decisions: list[RoutingDecision]) -> None:
    """Split each shipment's fee over its lines (see the module docstring) and set landed costs."""
    shipments: dict[tuple, list[RoutingDecision]] = defaultdict(list)
    for index, d in enumerate(decisions):
        if d.routed:
            # A line without a patient (a preview) is a shipment of its own.
            key = (d.partner.pk, d.patient_id) if d.patient_id is not None else (d.partner.pk, None, index)
            shipments[key].append(d)
    for group in shipments.values():
        shares = split_evenly(max(d.offering.shipping_fee for d in group), len(group))
        for d, share in zip(group, shares):
            d.shipping_share = share
            d.landed_cost = money(d.unit_price * d.quantity) + share
    _describe_costs(decisions, shipments)


def _describe_costs(decisions: list[RoutingDecision], shipments: dict[tuple, list[RoutingDecision]]) -> None:
    """Write the reason of each line chosen by cost, with the costs as the line shows them."""
    for d in decisions:
        if not d.routed or d.rule is not None:
            continue

        def cost_at(offering: Offering) -> Decimal:
            group = shipments.get((offering.partner_id, d.patient_id), []) if d.patient_id is not None else []
            fee = max([offering.shipping_fee, *(other.offering.shipping_fee for other in group)])
            return money(offering.unit_price * d.quantity) + split_evenly(fee, len(group) + 1)[-1]

        best_text = f"{d.partner.name} {format_money(d.landed_cost)}"
        others = sorted(((cost_at(o), o.partner.name) for o in d.alternatives))
        if not others:
            headline = f"only eligible partner: {best_text}"
        elif d.landed_cost <= others[0][0]:
            headline = f"cheapest eligible: {best_text} vs " + ", ".join(f"{name} {format_money(c)}" for c, name in others)
        else:  # sharing a shipment moved the prices after the choice: say what the choice compared
            alone = sorted((_comparable_cost(o, d.quantity), o.partner.name) for o in [d.offering, *d.alternatives])
            headline = "cheapest shipped on its own: " + ", ".join(f"{name} {format_money(c)}" for c, name in alone)
        d.headline = headline
        d.reason = f"{headline} (" + "; ".join(d.skipped_rules) + ")" if d.skipped_rules else headline


def _route(needs: list[_Need], *, clinic: Clinic | None, today: datetime.date | None,
           exclude_partner_ids: Collection[int] = ()) -> list[RoutingDecision]:
    if not needs:
        return []
    world = _load_world(needs, clinic=clinic, today=today or timezone.localdate(), exclude_partner_ids=exclude_partner_ids)
    decisions = [_decide(need, world) for need in needs]
    _apply_shipping_shares(decisions)
    return decisions


# --- public interface ----------------------------------------------------------------------------


def route_lines(lines: Iterable, *, clinic: Clinic | None, today: datetime.date | None = None,
                exclude_partner_ids: Collection[int] = ()) -> dict[int, RoutingDecision]:
    """Decide a partner for each line (CartLine-like objects), keyed by line id, in a fixed number
    of queries. ``clinic`` is the cart's clinic (for rules conditioned on clinic/organization).
    ``exclude_partner_ids``: partners that must not get the lines (they refused them already, when
    a line is rerouted); they are left out as if they carried nothing, and rules naming them too."""
    lines = list(lines)
    patients = _related_by_id(lines, "patient", Patient)
    products = _related_by_id(lines, "product", Product)
    needs = [
        _Need(
            line_id=line.pk, patient_id=line.patient_id, product=products[line.product_id],
            state=patients[line.patient_id].state or "", quantity=line.quantity,
        )
        for line in lines
    ]
    return {d.line_id: d for d in _route(needs, clinic=clinic, today=today, exclude_partner_ids=exclude_partner_ids)}


def route_preview(
    *, product: Product, state: str, quantity: int = 1, clinic: Clinic | None = None,
    today: datetime.date | None = None,
) -> RoutingDecision:
    """Where a single line for ``product`` shipping to ``state`` would go (the admin's test-a-route
    form). It is its own shipment, so it carries the offering's whole shipping fee."""
    need = _Need(line_id=None, patient_id=None, product=product, state=state, quantity=quantity)
    return _route([need], clinic=clinic, today=today)[0]


def _decision_list(decisions: Mapping[int, RoutingDecision] | Iterable[RoutingDecision]) -> list[RoutingDecision]:
    return list(decisions.values() if isinstance(decisions, Mapping) else decisions)


def partner_subtotals(decisions: Mapping[int, RoutingDecision] | Iterable[RoutingDecision]) -> list[PartnerSubtotal]:
    """Sum of landed costs per partner (shipping included), ordered by partner name."""
    sums: dict[int, Decimal] = defaultdict(lambda: ZERO)
    partners: dict[int, Partner] = {}
    for d in _decision_list(decisions):
        if d.routed:
            partners[d.partner.pk] = d.partner
            sums[d.partner.pk] += d.landed_cost
    return [PartnerSubtotal(partners[pk], sums[pk]) for pk in sorted(partners, key=lambda pk: (partners[pk].name, pk))]


def cart_total(decisions: Mapping[int, RoutingDecision] | Iterable[RoutingDecision]) -> Decimal:
    """Sum of the routed lines' landed costs. Unrouted lines have no price and add nothing."""
    return sum((d.landed_cost for d in _decision_list(decisions) if d.routed), ZERO)


def cart_totals(decisions: Mapping[int, RoutingDecision] | Iterable[RoutingDecision]) -> CartTotals:
    """Per-partner subtotals, shipping, total and the lines that could not be routed (so not priced)."""
    items = _decision_list(decisions)
    return CartTotals(
        subtotals=partner_subtotals(items),
        shipping=sum((d.shipping_share for d in items if d.routed), ZERO),
        total=cart_total(items),
        unrouted_line_ids=[d.line_id for d in items if not d.routed],
    )
