"""Malformed ids and query values in the admin get a clear answer, never a 500 (issue 14, item 7)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", [
    "/admin/catalog/partner/1.5/history/", "/admin/clinics/organization/²/history/",
    "/admin/routing/routingrule/None/history/", "/admin/clinics/membership/{}/history/",
    "/admin/clinics/patient/abc/who-saw/",
])
def test_an_admin_object_id_that_cannot_be_one_is_not_found(client_charlie, charlie, path):
    charlie.is_superuser = True
    charlie.save()
    assert client_charlie.get(path).status_code == 404


def test_a_malformed_key_in_an_add_pages_query_is_ignored(client_charlie, charlie):
    charlie.is_superuser = True
    charlie.save()
    response = client_charlie.get("/admin/clinics/membership/add/", {"clinic": "\r\n", "user": "TX"})
    assert response.status_code == 200


def test_anonymous_visitors_still_go_to_the_login_page(client):
    response = client.get("/admin/catalog/partner/1.5/history/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_malformed_key_posted_to_an_add_page_is_refused_with_the_form(client_charlie, charlie):
    charlie.is_superuser = True
    charlie.save()
    response = client_charlie.post("/admin/clinics/membership/add/", {"clinic": "%00", "user": "²", "role": "x"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
