import pytest
from django.urls import reverse

from clinics.models import Membership
from clinics.tests.factories import ClinicFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def test_home_takes_a_coordinator_to_their_clinics_cart(client_alice):
    response = client_alice.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("carts:cart")


def test_a_user_without_a_clinic_is_told_what_to_do(client, db):
    from clinics.tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get("/")
    assert response.status_code == 403 and "Ask your clinic admin" in response.content.decode()
    assert client.get(reverse("carts:cart")).status_code == 302


def test_staff_without_a_clinic_lands_in_the_admin(client_charlie):
    assert client_charlie.get("/")["Location"] == reverse("admin:index")


def test_a_member_of_two_clinics_switches_between_them(client, alice, clinic_a):
    other = ClinicFactory(organization=clinic_a.organization, name="Clinic A2")
    MembershipFactory(user=alice, clinic=other)
    client.force_login(alice)
    page = client.get(reverse("carts:cart")).content.decode()
    assert 'id="clinic-switcher"' in page and "Clinic A2" in page
    response = client.post(reverse("switch-clinic"), {"clinic": other.pk, "next": reverse("carts:cart")}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("carts:cart")
    assert "You are now working in Clinic A2." in response.content.decode()
    assert response.context["request"].clinic == other


def test_switching_to_a_clinic_you_do_not_belong_to_is_refused(client_alice, clinic_b):
    assert client_alice.post(reverse("switch-clinic"), {"clinic": clinic_b.pk}).status_code == 404
    assert client_alice.post(reverse("switch-clinic"), {"clinic": "x"}).status_code == 404
    assert client_alice.get(reverse("carts:cart")).context["request"].clinic.name == "Clinic A"


def test_switch_does_not_redirect_off_site(client_alice, clinic_a):
    response = client_alice.post(reverse("switch-clinic"), {"clinic": clinic_a.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_membership_is_rechecked_on_every_request(client, alice, clinic_a):
    """Removing a coordinator from a clinic takes effect on their next click, session or not."""
    other = ClinicFactory(name="Clinic Z")
    MembershipFactory(user=alice, clinic=other)
    client.force_login(alice)
    client.post(reverse("switch-clinic"), {"clinic": other.pk})
    assert client.get(reverse("carts:cart")).context["request"].clinic == other
    Membership.objects.filter(user=alice, clinic=other).delete()
    assert client.get(reverse("carts:cart")).context["request"].clinic == clinic_a
