"""The clinic billing page: a clinic admin saves the card once; coordinators see it, cannot change it."""

import pytest
from django.urls import reverse

from clinics.models import AuditEntry, Clinic, Membership
from clinics.services import BillingError, NotClinicAdmin, clinic_set_payment_method, clinic_start_card_setup
from clinics.tests.factories import MembershipFactory, UserFactory
from conftest import verified_login
from fizy.tests.fake_stripe import fake_stripe  # noqa: F401  (fixture)

BILLING = "/clinic/billing"


@pytest.fixture
def client_admin(client, clinic_admin_a):
    return verified_login(client, clinic_admin_a)


def start_setup(client):
    response = client.post(reverse("billing-setup"))
    assert response.status_code == 200, response.content
    return response.context["setup"]


def test_the_urls():
    assert reverse("billing") == BILLING
    assert reverse("billing-card") == "/clinic/billing/card"


def test_login_is_required(client, clinic_a):
    assert client.get(BILLING).status_code == 302
    assert client.post(reverse("billing-card"), {"setup_intent_id": "x"}).status_code == 302


def test_a_coordinator_sees_that_no_card_is_saved_and_who_can_fix_it(client_alice):
    response = client_alice.get(BILLING)

    assert response.status_code == 200
    assert "No card is saved for this clinic yet" in response.text
    assert "Ask your clinic admin" in response.text
    assert "Set up card" not in response.text


def test_a_clinic_admin_saves_a_sandbox_test_card(client_admin, clinic_a, clinic_admin_a):
    page = client_admin.get(BILLING)
    assert "Set up card" in page.text and "js.stripe.com" not in page.text

    setup = start_setup(client_admin)
    choices = dict(setup.test_cards)
    assert [label.split(" —")[0] for label in choices.values()] == ["Visa ending 4242", "Visa ending 0002", "Visa ending 3155"]
    declined = next(value for value, label in setup.test_cards if "0002" in label)
    response = client_admin.post(reverse("billing-card"), {"setup_intent_id": declined}, follow=True)

    clinic_a.refresh_from_db()
    assert (clinic_a.payment_method_id, clinic_a.card_brand, clinic_a.card_last4) == ("pm_sandbox_declined", "visa", "0002")
    assert clinic_a.card_exp == "12/2034" and clinic_a.stripe_customer_id.startswith("cus_sandbox_")
    assert "Card saved: Visa ending 0002" in response.text
    assert "Visa ending 0002" in response.text and "expires 12/2034" in response.text
    audit = AuditEntry.objects.get(action="clinic.payment_method_set")
    assert audit.actor == clinic_admin_a and audit.clinic == clinic_a
    assert audit.detail["last4"] == "0002"


def test_the_setup_step_renders_only_its_partial_for_htmx(client_admin):
    response = client_admin.post(reverse("billing-setup"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="card" id="card-setup">')
    assert "Use sandbox test card" in response.text


def test_a_coordinator_sees_the_card_but_cannot_change_it(client_alice, alice, clinic_a, clinic_admin_a):
    Clinic.objects.filter(pk=clinic_a.pk).update(
        payment_method_id="pm_sandbox_visa", card_brand="visa", card_last4="4242", card_exp="12/2034",
        stripe_customer_id="cus_sandbox_a",
    )

    page = client_alice.get(BILLING)
    setup = client_alice.post(reverse("billing-setup"))
    change = client_alice.post(reverse("billing-card"), {"setup_intent_id": "seti_sandbox.cus_sandbox_a.x:pm_sandbox_declined"})

    assert "Visa ending 4242" in page.text and "Replace card" not in page.text
    assert setup.status_code == 403 and change.status_code == 403
    assert "Only a clinic admin can change the clinic&#x27;s card" in change.text
    clinic_a.refresh_from_db()
    assert clinic_a.card_last4 == "4242"
    assert not AuditEntry.objects.filter(action__startswith="clinic.").exists()


def test_bob_cannot_see_or_change_clinic_as_card(client, bob, clinic_a, clinic_b, clinic_admin_a):
    Membership.objects.filter(user=bob).update(role=Membership.Role.CLINIC_ADMIN)
    Clinic.objects.filter(pk=clinic_a.pk).update(
        payment_method_id="pm_sandbox_visa", card_brand="visa", card_last4="4242", card_exp="12/2034",
        stripe_customer_id="cus_sandbox_a",
    )
    verified_login(client, bob)
    session = client.session
    session["active_clinic_id"] = clinic_a.pk  # a forged session still only reaches bob's own clinic
    session.save()

    page = client.get(BILLING)
    client.post(reverse("billing-setup"))  # bob's clinic gets its own customer
    stolen = client.post(reverse("billing-card"), {"setup_intent_id": "seti_sandbox.cus_sandbox_a.x:pm_sandbox_visa"})

    assert page.context["clinic"] == clinic_b
    assert "Clinic B" in page.text and "4242" not in page.text
    assert stolen.status_code == 400 and "does not belong to this clinic" in stolen.text
    clinic_b.refresh_from_db()
    assert clinic_b.payment_method_id == ""


def test_an_unfinished_card_form_is_a_readable_error(client_admin):
    response = client_admin.post(reverse("billing-card"), {"setup_intent_id": ""})

    assert response.status_code == 400
    assert "Start the card setup again" in response.text


def test_services_refuse_an_actor_who_is_not_a_clinic_admin(clinic_a, alice):
    with pytest.raises(NotClinicAdmin):
        clinic_start_card_setup(clinic=clinic_a, actor=alice)
    with pytest.raises(NotClinicAdmin):
        clinic_set_payment_method(clinic=clinic_a, setup_intent_id="seti_sandbox.x.y", actor=alice)
    outsider = UserFactory(username="mallory")
    MembershipFactory(user=outsider, role=Membership.Role.CLINIC_ADMIN)  # admin of another clinic
    with pytest.raises(BillingError):
        clinic_start_card_setup(clinic=clinic_a, actor=outsider)


def test_the_customer_is_created_once(clinic_a, clinic_admin_a):
    first = clinic_start_card_setup(clinic=clinic_a, actor=clinic_admin_a)
    clinic_a.refresh_from_db()
    customer = clinic_a.stripe_customer_id
    second = clinic_start_card_setup(clinic=clinic_a, actor=clinic_admin_a)

    clinic_a.refresh_from_db()
    assert customer and clinic_a.stripe_customer_id == customer
    assert first.setup_intent_id == second.setup_intent_id  # the sandbox is deterministic per customer
    assert AuditEntry.objects.filter(action="clinic.billing_customer_created").count() == 1


def test_stripe_mode_saves_the_card_through_a_setup_intent(client_admin, clinic_a, fake_stripe):  # noqa: F811
    page = client_admin.get(BILLING)
    assert page.text.count("https://js.stripe.com/v3/") == 1

    setup = start_setup(client_admin)
    form_page = client_admin.post(reverse("billing-setup"))
    assert 'id="stripe-card-form"' in form_page.text and "pk_test_fizy_fake" in form_page.text
    assert "Use sandbox test card" not in form_page.text
    fake_stripe.confirm_setup_intent(setup.setup_intent_id, "pm_card_visa")  # what Stripe.js does
    response = client_admin.post(reverse("billing-card"), {"setup_intent_id": setup.setup_intent_id})

    assert response.status_code == 302
    clinic_a.refresh_from_db()
    assert (clinic_a.payment_method_id, clinic_a.card_last4, clinic_a.card_exp) == ("pm_card_visa", "4242", "08/2031")
    assert clinic_a.stripe_customer_id.startswith("cus_fake")
    (customer_post,) = fake_stripe.posts("/v1/customers")
    assert customer_post["form"]["metadata[clinic_id]"] == str(clinic_a.pk)
    assert customer_post["headers"]["idempotency-key"] == f"fizy-clinic-{clinic_a.pk}-customer"


def test_stripe_mode_an_unconfirmed_setup_is_not_saved(client_admin, clinic_a, fake_stripe):  # noqa: F811
    setup = start_setup(client_admin)

    response = client_admin.post(reverse("billing-card"), {"setup_intent_id": setup.setup_intent_id})

    assert response.status_code == 400 and "The card was not saved" in response.text
    clinic_a.refresh_from_db()
    assert clinic_a.payment_method_id == ""


def test_stripe_down_while_starting_the_setup_is_shown_not_raised(client_admin, fake_stripe):  # noqa: F811
    fake_stripe.fail_next = [500]

    response = client_admin.post(reverse("billing-setup"))

    assert response.status_code == 200
    assert "Stripe could not create the clinic&#x27;s billing profile" in response.text
