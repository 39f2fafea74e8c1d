"""Bad input to the cart pages gets a clear answer, never a 500 (issue 14, item 7)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from carts.models import Cart, CartLine
from clinics.tests.factories import ClinicFactory, MembershipFactory

from .test_views import line_a  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("params", [{"choose_patient": "abc"}, {"patient": "²"}, {"choose_product": "1.5"},
                                    {"product": "9" * 40}, {"patient": "-1"}])
def test_an_id_that_cannot_be_one_is_not_found(client_alice, line_a, params):  # noqa: F811
    assert client_alice.get(reverse("carts:add-panel"), params).status_code == 404


def test_adding_a_line_with_a_malformed_product_is_not_found(client_alice, line_a):  # noqa: F811
    response = client_alice.post(reverse("carts:line-add"), {"patient": line_a.patient_id, "product": "x²"})
    assert response.status_code == 404


@pytest.mark.parametrize("days", ["²", "٣", "-5", "9" * 30, "1e3"])
def test_refills_with_a_strange_window_show_the_default_one(client_alice, line_a, days):  # noqa: F811
    response = client_alice.get(reverse("carts:refills"), {"days": days})
    assert response.status_code == 200 and response.context["days"] == 7


def test_checkout_with_a_unicode_digit_version_asks_to_check_the_total(client_alice, line_a):  # noqa: F811
    response = client_alice.post(reverse("carts:checkout"), {"version": "²", "quote": "junk"})
    assert response.status_code == 200
    assert "Check the total on this page" in response.content.decode()


@pytest.mark.parametrize("url, data", [
    ("carts:patient-results", {"q": "Ada\x00"}),
    ("carts:product-results", {"q": "\x00"}),
])
def test_a_nul_character_in_a_search_is_refused_with_a_message(client_alice, line_a, url, data):  # noqa: F811
    response = client_alice.get(reverse(url), data)
    assert response.status_code == 400 and "NUL character" in response.content.decode()


def test_a_nul_character_in_a_form_field_is_refused_and_nothing_changes(client_alice, line_a):  # noqa: F811
    response = client_alice.post(reverse("carts:line-save", args=[line_a.pk]),
                                 {"quantity": 2, "sig": "Inject\x00 weekly", "days_supply": 28})
    assert response.status_code == 400 and "NUL character" in response.content.decode()
    assert CartLine.objects.get(pk=line_a.pk).quantity == 1


def test_a_csv_file_with_nul_characters_is_refused_with_a_message(client_alice, line_a):  # noqa: F811
    upload = SimpleUploadedFile("list.csv", b"chart_id,product,quantity,sig,prescriber_npi,days_supply\nA-1\x00,x,1,s,1,3\n")
    response = client_alice.post(reverse("carts:import"), {"file": upload})
    assert response.status_code == 200 and "contains NUL characters" in response.content.decode()


@pytest.mark.parametrize("next_, expected", [
    ("TX", "/"), ("https://evil.example/cart/", "/"), ("//evil.example/", "/"), ("/orders/", "/orders/"),
])
def test_switching_clinic_goes_only_to_a_local_page(client_alice, alice, next_, expected):
    other = ClinicFactory(name="Clinic A2")
    MembershipFactory(user=alice, clinic=other)
    response = client_alice.post(reverse("switch-clinic"), {"clinic": other.pk, "next": next_})
    assert response.status_code == 302 and response["Location"] == expected


@pytest.mark.parametrize("clinic", ["²", "abc", "9" * 40, ""])
def test_switching_to_a_malformed_clinic_is_not_found(client_alice, clinic):
    assert client_alice.post(reverse("switch-clinic"), {"clinic": clinic, "next": "/"}).status_code == 404


@pytest.mark.parametrize("action, data", [
    ("carts:line-acknowledge", {"code": "duplicate_therapy"}),
    ("carts:line-remove", {}),
    ("carts:line-save", {"quantity": 5, "sig": "x", "days_supply": 28}),
    ("carts:line-fix", {"field": "quantity", "value": "5"}),
])
def test_an_action_on_a_line_of_a_submitted_cart_says_it_is_no_longer_in_the_cart(client_alice, line_a, action, data):  # noqa: F811
    Cart.objects.filter(pk=line_a.cart_id).update(status=Cart.Status.SUBMITTED)
    response = client_alice.post(reverse(action, args=[line_a.pk]), data)
    page = response.content.decode()
    assert response.status_code == 200 and "no longer in the open cart" in page
    assert "Removed" not in page
    line = CartLine.objects.get(pk=line_a.pk)  # the submitted cart's line is untouched
    assert line.quantity == 1 and line.acknowledged_warnings == []
