import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from carts.tests.factories import CartFactory, CartLineFactory
from catalog.models import PartnerStateLicense
from catalog.tests.factories import OfferingFactory, PartnerFactory, ProductFactory
from clinics.tests.factories import PatientFactory
from fizy.lib.money import format_money, split_evenly
from routing.engine import cart_total, cart_totals, partner_subtotals, route_lines, route_preview
from routing.tests.factories import RoutingRuleFactory, route_cart

pytestmark = pytest.mark.django_db


@pytest.fixture
def cart():
    return CartFactory()


def add_line(cart, product, state="TX", patient=None, **fields):
    patient = patient or PatientFactory(organization=cart.clinic.organization, state=state)
    return CartLineFactory(cart=cart, patient=patient, product=product, **fields)


def offering_cost(partner, product, quantity=1):
    offering = partner.offerings.get(product=product)
    return offering.unit_price * quantity + offering.shipping_fee


# --- choosing the partner ------------------------------------------------------------------------


def test_without_rules_the_cheapest_eligible_partner_wins_and_the_reason_compares_costs(cart, glp1, harbor, cedar):
    line = add_line(cart, glp1, state="TX")

    decision = route_cart(cart)[line.pk]

    cheaper, dearer = sorted([harbor, cedar], key=lambda p: offering_cost(p, glp1))
    assert decision.partner == cheaper
    assert decision.rule is None
    assert decision.reason.startswith("cheapest eligible")
    assert f"{cheaper.name} {format_money(offering_cost(cheaper, glp1))}" in decision.reason
    assert f"{dearer.name} {format_money(offering_cost(dearer, glp1))}" in decision.reason


def test_cheapest_compares_price_times_quantity_plus_shipping(cart, glp1, harbor, cedar):
    # Cedar's price is higher but its shipping lower; at quantity 1 Harbor wins, so make shipping decide.
    harbor.offerings.update(unit_price=Decimal("150.00"), shipping_fee=Decimal("30.00"))
    line = add_line(cart, glp1, state="TX", quantity=1)

    decision = route_cart(cart)[line.pk]

    assert offering_cost(cedar, glp1) < offering_cost(harbor, glp1)
    assert decision.partner == cedar


def test_the_only_eligible_partner_is_named_as_such(cart, glp1, harbor, cedar):
    line = add_line(cart, glp1, state="CA")  # Cedar is licensed in TX only

    decision = route_cart(cart)[line.pk]

    assert decision.partner == harbor
    assert "only eligible partner: Harbor" in decision.reason
    assert any("Cedar is not licensed in CA" in text for text in decision.ineligible)


def test_rules_apply_by_ascending_priority_before_price(cart, glp1, harbor, cedar):
    RoutingRuleFactory(name="Everything to Harbor", priority=20, partner=harbor)
    RoutingRuleFactory(name="TX GLP-1 to Cedar", priority=10, partner=cedar, product=glp1, states=["TX"])
    line = add_line(cart, glp1, state="TX")

    decision = route_cart(cart)[line.pk]

    assert decision.partner == cedar
    assert decision.rule.name == "TX GLP-1 to Cedar"
    assert decision.reason == "rule 'TX GLP-1 to Cedar'"


def test_a_rule_whose_conditions_do_not_match_is_ignored_silently(cart, glp1, harbor, cedar):
    RoutingRuleFactory(name="CA only", priority=1, partner=cedar, states=["CA", "OR"])
    RoutingRuleFactory(name="Other clinic", priority=2, partner=cedar, clinic=CartFactory().clinic)
    RoutingRuleFactory(name="Inactive", priority=3, partner=cedar, active=False)
    RoutingRuleFactory(name="Other product", priority=4, partner=cedar, product=ProductFactory())
    line = add_line(cart, glp1, state="TX")

    decision = route_cart(cart)[line.pk]

    assert decision.rule is None
    assert decision.reason.startswith("cheapest eligible")
    assert decision.skipped_rules == []


def test_rules_for_the_cart_s_clinic_and_organization_apply(cart, glp1, harbor, cedar):
    RoutingRuleFactory(name="Org rule", priority=2, partner=cedar, organization=cart.clinic.organization)
    RoutingRuleFactory(name="Clinic rule", priority=1, partner=harbor, clinic=cart.clinic)
    line = add_line(cart, glp1, state="TX")

    assert route_cart(cart)[line.pk].rule.name == "Clinic rule"


@pytest.mark.parametrize(
    "break_cedar, expected",
    [
        (lambda p, product: PartnerStateLicense.objects.filter(partner=p).delete(), "Cedar is not licensed in TX"),
        (lambda p, product: PartnerStateLicense.objects.filter(partner=p).update(
            expires_on=datetime.date.today() - datetime.timedelta(days=1)), "Cedar's TX license expired on"),
        (lambda p, product: p.offerings.update(stock_quantity=0), "Cedar is out of stock (has 0, needs 1)"),
        (lambda p, product: p.offerings.update(active=False), "Cedar's offering of Semaglutide is inactive"),
        (lambda p, product: type(p).objects.filter(pk=p.pk).update(active=False), "Cedar is inactive"),
        (lambda p, product: type(p).objects.filter(pk=p.pk).update(api_base_url=""),
         "Cedar has no order API URL yet (one takes effect once a second staff member approves it)"),
        (lambda p, product: p.offerings.all().delete(), "Cedar does not carry Semaglutide"),
    ],
    ids=["unlicensed", "license-expired", "no-stock", "offering-inactive", "partner-inactive", "no-order-api-url",
         "not-carried"],
)
def test_a_rule_whose_partner_is_ineligible_is_skipped_with_the_reason(cart, glp1, harbor, cedar, break_cedar, expected):
    RoutingRuleFactory(name="TX to Cedar", priority=1, partner=cedar, states=["TX"])
    break_cedar(cedar, glp1)
    line = add_line(cart, glp1, state="TX")

    decision = route_cart(cart)[line.pk]

    assert decision.partner == harbor
    assert len(decision.skipped_rules) == 1
    assert decision.skipped_rules[0].startswith(f"rule 'TX to Cedar' skipped: {expected}")
    assert "rule 'TX to Cedar' skipped" in decision.reason


def test_the_next_rule_wins_when_the_first_is_skipped(cart, glp1, harbor, cedar):
    RoutingRuleFactory(name="CA GLP-1 to Cedar", priority=1, partner=cedar, product=glp1, states=["CA"])
    RoutingRuleFactory(name="CA GLP-1 to Harbor", priority=2, partner=harbor, product=glp1, states=["CA"])
    line = add_line(cart, glp1, state="CA")

    decision = route_cart(cart)[line.pk]

    assert decision.rule.name == "CA GLP-1 to Harbor"
    assert decision.reason.startswith("rule 'CA GLP-1 to Harbor'")
    assert "rule 'CA GLP-1 to Cedar' skipped: Cedar is not licensed in CA" in decision.reason


def test_no_eligible_partner_says_why_for_each_partner(cart, glp1, harbor, cedar):
    harbor.offerings.update(stock_quantity=3, active=False)
    line = add_line(cart, glp1, state="CA", quantity=4)

    decision = route_cart(cart)[line.pk]

    assert decision.partner is None and decision.offering is None and decision.landed_cost is None
    assert "Harbor's offering of Semaglutide is inactive; Harbor is out of stock (has 3, needs 4)" in decision.reason
    assert "Cedar is not licensed in CA" in decision.reason
    assert len(decision.ineligible) == 2
    assert decision.available_stock is None  # more stock alone would not help


def test_when_only_stock_prevents_routing_in_one_state_the_available_quantity_is_reported(cart, glp1, harbor, cedar):
    harbor.offerings.update(stock_quantity=3)
    line = add_line(cart, glp1, state="CA", quantity=4)

    decision = route_cart(cart)[line.pk]

    assert decision.partner is None
    assert decision.available_stock == 3  # Harbor could fill 3; Cedar cannot ship to CA at all


def test_when_only_stock_prevents_routing_the_available_quantity_is_reported(cart, glp1, harbor, cedar):
    harbor.offerings.update(stock_quantity=3)
    cedar.offerings.update(stock_quantity=2)
    line = add_line(cart, glp1, state="TX", quantity=4)

    decision = route_cart(cart)[line.pk]

    assert decision.partner is None
    assert decision.available_stock == 3


def test_nobody_carries_the_product(cart, harbor):
    orphan = ProductFactory(name="Orphan compound")
    line = add_line(cart, orphan, state="TX")

    decision = route_cart(cart)[line.pk]

    assert decision.partner is None
    assert "no partner carries Orphan compound" in decision.reason


def test_a_patient_without_a_state_cannot_be_routed(cart, glp1, harbor):
    line = add_line(cart, glp1, state="")

    decision = route_cart(cart)[line.pk]

    assert decision.partner is None
    assert "ship-to state is missing" in decision.reason


# --- landed cost ---------------------------------------------------------------------------------


def test_a_patient_s_lines_at_one_partner_share_one_shipping_fee(cart, harbor):
    patient = PatientFactory(organization=cart.clinic.organization, state="TX")
    fees = [Decimal("10.00"), Decimal("10.00"), Decimal("4.00")]
    lines = []
    for fee in fees:
        product = ProductFactory()
        OfferingFactory(partner=harbor, product=product, unit_price=Decimal("20.00"), shipping_fee=fee)
        lines.append(add_line(cart, product, patient=patient, quantity=2))
    other = add_line(cart, lines[0].product, state="TX")  # another patient: another package

    decisions = route_cart(cart)

    shares = [decisions[line.pk].shipping_share for line in lines]
    assert sum(shares) == max(fees)
    assert max(shares) - min(shares) <= Decimal("0.01")
    assert all(share.as_tuple().exponent == -2 for share in shares)
    assert decisions[other.pk].shipping_share == Decimal("10.00")
    for line in lines:
        d = decisions[line.pk]
        assert d.landed_cost == d.unit_price * line.quantity + d.shipping_share


def test_subtotals_per_partner_and_total_add_up(cart, glp1, harbor, cedar):
    other_product = ProductFactory()
    OfferingFactory(partner=cedar, product=other_product, unit_price=Decimal("9.99"), shipping_fee=Decimal("5.00"))
    tx_patient = PatientFactory(organization=cart.clinic.organization, state="TX")
    add_line(cart, glp1, patient=tx_patient, quantity=2)
    add_line(cart, other_product, patient=tx_patient, quantity=3)
    add_line(cart, glp1, state="CA")
    add_line(cart, ProductFactory(), state="TX")  # nobody carries it

    decisions = route_cart(cart)
    subtotals = partner_subtotals(decisions)
    totals = cart_totals(decisions)

    routed = [d for d in decisions.values() if d.partner]
    assert {p for p, _ in subtotals} == {d.partner for d in routed}
    for partner, subtotal in subtotals:
        assert subtotal == sum(d.landed_cost for d in routed if d.partner == partner)
    assert cart_total(decisions) == totals.total == sum(s for _, s in subtotals)
    assert totals.shipping == sum(d.shipping_share for d in routed)
    assert len(totals.unrouted_line_ids) == 1


@given(
    fee=st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False),
    parts=st.integers(min_value=1, max_value=40),
)
def test_split_evenly_always_sums_to_the_amount_in_cents(fee, parts):
    shares = split_evenly(fee, parts)

    assert sum(shares) == fee
    assert max(shares) - min(shares) <= Decimal("0.01")
    assert shares == sorted(shares, reverse=True)  # remainder cents on the first lines


# --- preview and queries -------------------------------------------------------------------------


def test_route_preview_shows_partner_cost_and_reason(glp1, harbor, cedar):
    decision = route_preview(product=glp1, state="CA", quantity=2)

    assert decision.partner == harbor
    assert decision.landed_cost == offering_cost(harbor, glp1, quantity=2)
    assert any("Cedar is not licensed in CA" in text for text in [*decision.skipped_rules, *decision.ineligible])


def test_route_preview_ignores_clinic_specific_rules_without_a_clinic(glp1, harbor, cedar):
    cart = CartFactory()
    RoutingRuleFactory(name="Clinic rule", priority=1, partner=cedar, clinic=cart.clinic)

    assert route_preview(product=glp1, state="TX").rule is None
    assert route_preview(product=glp1, state="TX", clinic=cart.clinic).rule.name == "Clinic rule"


def _fill(cart, glp1, count):
    others = [ProductFactory() for _ in range(3)]
    for product in others:
        OfferingFactory(product=product, partner=PartnerFactory(states=["TX", "CA"]))
    for i in range(count):
        add_line(cart, [glp1, *others][i % 4], state=["TX", "CA", "NY"][i % 3])


def _count_queries(func):
    with CaptureQueriesContext(connection) as ctx:
        func()
    return len(ctx.captured_queries)


@pytest.mark.parametrize("preloaded", [True, False], ids=["select_related", "bare-lines"])
def test_routing_200_lines_takes_as_many_queries_as_20(glp1, harbor, cedar, preloaded, django_assert_num_queries):
    RoutingRuleFactory(priority=1, partner=cedar, states=["TX"])
    small, large = CartFactory(), CartFactory()
    _fill(small, glp1, 20)
    _fill(large, glp1, 200)

    def route(cart):
        lines = cart.lines.select_related("patient", "product") if preloaded else cart.lines.all()
        return lambda: route_lines(list(lines), clinic=cart.clinic)

    expected = _count_queries(route(small))
    with django_assert_num_queries(expected):
        decisions = route(large)()
    assert len(decisions) == 200
    assert expected <= 8


def test_the_reason_prices_the_line_as_it_is_shown_shipping_share_included(cart):
    """Two capsule lines of one patient go to Cedar and share its $9.00 shipping: each shows $4.50
    of it, and the reason compares that landed cost, not the price with the whole fee."""
    ldn, prog = ProductFactory(name="Naltrexone"), ProductFactory(name="Progesterone")
    cedar, harbor = PartnerFactory(name="Cedar", states=["TX"]), PartnerFactory(name="Harbor", states=["TX"])
    for product, (cedar_price, harbor_price) in {ldn: ("0.65", "0.72"), prog: ("0.48", "0.52")}.items():
        OfferingFactory(partner=cedar, product=product, unit_price=Decimal(cedar_price), shipping_fee=Decimal("9.00"))
        OfferingFactory(partner=harbor, product=product, unit_price=Decimal(harbor_price), shipping_fee=Decimal("10.00"))
    patient = PatientFactory(organization=cart.clinic.organization, state="TX")
    first = add_line(cart, ldn, patient=patient, quantity=30)
    add_line(cart, prog, patient=patient, quantity=30)

    decision = route_cart(cart)[first.pk]

    assert decision.partner == cedar and decision.shipping_share == Decimal("4.50")
    assert decision.landed_cost == Decimal("24.00")  # 30 × $0.65 + $4.50
    # Harbor would ship this line alone: 30 × $0.72 + $10.00.
    assert decision.headline == "cheapest eligible: Cedar $24.00 vs Harbor $31.60"
    assert "$28.50" not in decision.reason
