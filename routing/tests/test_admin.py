
import pytest
from django.urls import reverse

from catalog.tests.factories import ProductFactory
from clinics.tests.factories import ClinicFactory, OrganizationFactory, UserFactory
from conftest import verified_login
from routing.models import RoutingRule
from routing.tests.factories import RoutingRuleFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:routing_routingrule_changelist"
TEST_ROUTE = "admin:routing_routingrule_test_route"


def rule_form(**fields):
    data = {"name": "CA GLP-1 → Harbor", "priority": "10", "active": "on", "partner": "", "product": "",
            "organization": "", "clinic": ""}
    data.update({k: str(v.pk) if hasattr(v, "pk") else v for k, v in fields.items()})
    return data


def test_rules_are_listed_by_priority_with_their_conditions(client_charlie, glp1, harbor, cedar):
    RoutingRuleFactory(name="Fallback to Cedar", priority=50, partner=cedar)
    RoutingRuleFactory(name="CA GLP-1 → Harbor", priority=5, partner=harbor, product=glp1, states=["CA", "OR"])

    page = client_charlie.get(reverse(CHANGELIST)).content.decode()

    assert page.index("CA GLP-1 → Harbor") < page.index("Fallback to Cedar")
    assert "ships to CA, OR" in page and "every line" in page
    assert reverse(TEST_ROUTE) in page  # the "Test a route" link


def test_priority_and_active_are_edited_from_the_list(client_charlie, harbor, cedar):
    first = RoutingRuleFactory(name="First", priority=1, partner=harbor)
    second = RoutingRuleFactory(name="Second", priority=2, partner=cedar)
    data = {
        "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2",
        "form-0-id": str(first.pk), "form-0-priority": "30", "form-0-active": "on",
        "form-1-id": str(second.pk), "form-1-priority": "20",  # unticked: deactivated
        "_save": "Save",
    }

    response = client_charlie.post(reverse(CHANGELIST), data)

    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.priority, first.active) == (30, True)
    assert (second.priority, second.active) == (20, False)


def test_a_rule_is_added_with_states_picked_from_a_list(client_charlie, glp1, harbor):
    response = client_charlie.post(
        reverse("admin:routing_routingrule_add"), rule_form(partner=harbor, product=glp1, states=["TX", "CA"])
    )

    assert response.status_code == 302, response.content.decode()
    rule = RoutingRule.objects.get()
    assert rule.states == ["CA", "TX"]
    assert rule.product == glp1 and rule.partner == harbor


def test_the_add_form_offers_us_states_to_choose(client_charlie):
    page = client_charlie.get(reverse("admin:routing_routingrule_add")).content.decode()

    assert '<option value="TX">Texas</option>' in page


@pytest.mark.parametrize("problem", ["unknown-state", "clinic-of-another-organization", "partner-without-offering"])
def test_rules_that_cannot_work_are_refused_with_a_message(client_charlie, glp1, harbor, problem):
    if problem == "unknown-state":
        data, expected = rule_form(partner=harbor, states=["ZZ"]), "ZZ is not one of the available choices"
    elif problem == "clinic-of-another-organization":
        clinic = ClinicFactory(name="Elsewhere")
        data = rule_form(partner=harbor, organization=OrganizationFactory(name="Acme"), clinic=clinic)
        expected = "Elsewhere belongs to"
    else:
        data, expected = rule_form(partner=harbor, product=ProductFactory(name="Rare compound")), "Harbor does not offer"

    response = client_charlie.post(reverse("admin:routing_routingrule_add"), data)

    assert response.status_code == 200
    assert expected in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_rules_can_be_filtered_by_ship_to_state(client_charlie, harbor, cedar):
    RoutingRuleFactory(name="Only California", partner=harbor, states=["CA"])
    RoutingRuleFactory(name="Only Texas", partner=cedar, states=["TX"])
    RoutingRuleFactory(name="Anywhere", partner=cedar)

    page = client_charlie.get(reverse(CHANGELIST), {"state": "TX"}).content.decode()

    assert "Only Texas" in page and "Anywhere" in page
    assert "Only California" not in page


def test_test_a_route_shows_the_partner_and_why(client_charlie, glp1, harbor, cedar):
    page = client_charlie.get(reverse(TEST_ROUTE), {"product": glp1.pk, "state": "CA", "quantity": 2}).content.decode()

    assert "Routed to Harbor" in page
    assert "only eligible partner: Harbor" in page
    assert "Cedar is not licensed in CA" in page


def test_test_a_route_names_the_rule_and_the_rules_it_skipped(client_charlie, glp1, harbor, cedar):
    RoutingRuleFactory(name="Everything to Cedar", priority=1, partner=cedar)
    RoutingRuleFactory(name="CA GLP-1 → Harbor", priority=2, partner=harbor, product=glp1, states=["CA"])

    page = client_charlie.get(reverse(TEST_ROUTE), {"product": glp1.pk, "state": "CA", "quantity": 1}).content.decode()

    assert "rule &#x27;CA GLP-1 → Harbor&#x27;" in page
    assert "rule &#x27;Everything to Cedar&#x27; skipped: Cedar is not licensed in CA" in page


def test_test_a_route_says_when_nobody_can_fill_it(client_charlie, glp1, harbor, cedar):
    page = client_charlie.get(reverse(TEST_ROUTE), {"product": glp1.pk, "state": "NY", "quantity": 1}).content.decode()

    assert "No eligible partner" in page
    assert "Harbor is not licensed in NY" in page and "Cedar is not licensed in NY" in page


def test_test_a_route_starts_with_an_empty_form(client_charlie):
    response = client_charlie.get(reverse(TEST_ROUTE))

    assert response.status_code == 200
    assert 'id="test-route-form"' in response.content.decode()
    assert "route-result" not in response.content.decode()


def test_routing_admin_is_for_staff_only(client, alice, glp1):
    client.force_login(alice)
    for url in [reverse(CHANGELIST), reverse(TEST_ROUTE)]:
        response = client.get(url, {"product": glp1.pk, "state": "CA"})
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_staff_without_routing_permission_cannot_test_routes(client, glp1):
    verified_login(client, UserFactory(username="intern", is_staff=True))

    assert client.get(reverse(TEST_ROUTE), {"product": glp1.pk, "state": "CA"}).status_code == 403
