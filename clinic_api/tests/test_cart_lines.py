import pytest

from carts.models import CartLine
from carts.selectors import cart_review
from carts.services import LineInput, cart_add_lines, cart_get_active
from clinics.models import AuditEntry
from clinics.tests.factories import PatientFactory, PrescriberFactory

from .conftest import DROP, line_body

pytestmark = pytest.mark.django_db


def test_add_lines_and_list_them_with_routing_cost_and_problems(api, clinic_a, catalog_world):
    other = PatientFactory(organization=clinic_a.organization, state="TX")
    answer = api.post("/api/v1/cart/lines", {"lines": [
        line_body(catalog_world, quantity=2),
        line_body(catalog_world, patient=DROP, chart_id=other.chart_id, product=DROP, product_sku="SEMA-5",
                  prescriber=DROP, prescriber_npi=catalog_world["prescriber"].npi, sig="take as directed"),
    ]}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert len(body["created"]) == 2 and body["merged"] == []
    lines = {l["patient"]: l for l in api.get("/api/v1/cart/lines").json()}
    first = lines[catalog_world["patient"].pk]
    assert first["routing"]["partner"] == "Cedar" and first["routing"]["routed"]
    assert first["landed_cost"] == "320.00" and first["problems"] == []
    # The vague SIG: the very Problem the cart page shows.
    review = cart_review(cart=cart_get_active(clinic=clinic_a))
    page_problems = [(p.line_id, p.field, p.code, p.message, p.severity) for p in review.problems]
    api_problems = [(p["line"], p["field"], p["code"], p["message"], p["severity"])
                    for l in lines.values() for p in l["problems"]]
    assert sorted(api_problems) == sorted(page_problems) and any(p[2] == "sig_too_vague" for p in api_problems)
    audit = AuditEntry.objects.filter(action="cart.add", clinic=clinic_a)
    assert audit.count() == 2 and set(audit.values_list("actor_label", flat=True)) == {"API key 'EHR sync'"}
    assert set(CartLine.objects.values_list("added_by", flat=True)) == {None}


def test_the_same_patient_and_product_merges(api, catalog_world):
    api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world)]}, format="json")
    again = api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world, quantity=2)]}, format="json").json()
    assert again["created"] == [] and len(again["merged"]) == 1 and again["lines"][0]["quantity"] == 3
    assert "quantity is now 3" in again["messages"][0]


def test_a_retried_request_adds_nothing_and_gets_the_first_answer(api, catalog_world):
    body = {"lines": [line_body(catalog_world)]}
    first = api.post("/api/v1/cart/lines", body, format="json", HTTP_IDEMPOTENCY_KEY="refill-day-7")
    retry = api.post("/api/v1/cart/lines", body, format="json", HTTP_IDEMPOTENCY_KEY="refill-day-7")
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert CartLine.objects.get().quantity == 1
    other = api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world, quantity=3)]}, format="json",
                     HTTP_IDEMPOTENCY_KEY="refill-day-7")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert other.json()["field"] == "Idempotency-Key"
    assert CartLine.objects.get().quantity == 1


def test_a_line_the_add_form_would_refuse_is_refused_with_the_carts_codes(api, catalog_world):
    answer = api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world), line_body(
        catalog_world, prescriber=None, sig="", days_supply=None)]}, format="json")
    assert answer.status_code == 422
    errors = {(e["field"], e["code"]) for e in answer.json()["errors"]}
    assert errors == {("lines[1].prescriber", "prescriber_missing"), ("lines[1].sig", "sig_missing"),
                      ("lines[1].days_supply", "days_supply_invalid")}
    assert not CartLine.objects.exists()  # all or nothing


def test_bad_references_and_types_name_the_field(api, clinic_b, catalog_world):
    theirs = PatientFactory(organization=clinic_b.organization)
    answer = api.post("/api/v1/cart/lines", {"lines": [
        line_body(catalog_world, patient=theirs.pk), line_body(catalog_world, product_sku="NOPE", product=DROP),
        line_body(catalog_world, quantity=0), line_body(catalog_world, prescriber=PrescriberFactory().pk),
        {**line_body(catalog_world), "colour": "blue"}]}, format="json")
    assert answer.status_code == 400
    errors = {(e["field"], e["code"]) for e in answer.json()["errors"]}
    assert ("lines[4].colour", "unknown_field") in errors
    answer = api.post("/api/v1/cart/lines", {"lines": [
        line_body(catalog_world, patient=theirs.pk), line_body(catalog_world, product_sku="NOPE", product=DROP),
        line_body(catalog_world, quantity=0), line_body(catalog_world, prescriber=PrescriberFactory().pk)]}, format="json")
    errors = {(e["field"], e["code"]) for e in answer.json()["errors"]}
    assert errors == {("lines[0].patient", "patient_not_found"), ("lines[1].product_sku", "product_not_found"),
                      ("lines[2].quantity", "invalid"), ("lines[3].prescriber", "invalid_choice")}
    assert not CartLine.objects.exists()


def test_change_and_remove_a_line(api, clinic_a, catalog_world):
    line_id = api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world)]}, format="json").json()["created"][0]
    changed = api.patch(f"/api/v1/cart/lines/{line_id}", {"quantity": 5}, format="json")
    assert changed.status_code == 200 and changed.json()["quantity"] == 5
    assert [p["code"] for p in changed.json()["problems"]] == ["quantity_over_max"]
    bad = api.patch(f"/api/v1/cart/lines/{line_id}", {"quantity": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "quantity"
    assert api.patch(f"/api/v1/cart/lines/{line_id}", {"status": "x"}, format="json").json()["code"] == "unknown_field"
    assert api.delete(f"/api/v1/cart/lines/{line_id}").status_code == 204
    assert not CartLine.objects.exists()
    assert AuditEntry.objects.filter(action="cart.remove", actor_label="API key 'EHR sync'").exists()


def test_another_clinics_line_is_404(api, clinic_b, bob, catalog_world):
    theirs = cart_add_lines(clinic=clinic_b, actor=bob, items=[LineInput(
        patient=PatientFactory(organization=clinic_b.organization), product=catalog_world["product"],
        prescriber=None, quantity=1)]).created[0]
    for method in ("get", "patch", "delete"):
        answer = getattr(api, method)(f"/api/v1/cart/lines/{theirs.pk}", {"quantity": 2}, format="json")
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert CartLine.objects.get(pk=theirs.pk).quantity == 1


def test_validate_and_totals(api, catalog_world):
    empty = api.post("/api/v1/cart/validate").json()
    assert [p["code"] for p in empty["problems"]] == ["cart_empty"] and not empty["cart"]["can_checkout"]
    api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world, quantity=2)]}, format="json")
    result = api.post("/api/v1/cart/validate").json()
    assert result["problems"] == [] and result["cart"]["can_checkout"]
    cart = api.get("/api/v1/cart").json()
    assert cart["lines"] == 1 and cart["drugs"] == "320.00" and cart["total"] == cart["drugs"]


def test_ready_for_review_emails_the_coordinators(api, alice, clinic_a, catalog_world, mailoutbox,
                                                  django_capture_on_commit_callbacks):
    assert api.post("/api/v1/cart/ready").json()["code"] == "cart_empty"
    api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world)]}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        answer = api.post("/api/v1/cart/ready", {"note": "Tuesday refills"}, format="json")
    assert answer.status_code == 202 and answer.json()["notified"] >= 1
    assert len(mailoutbox) == 1 and alice.email in mailoutbox[0].to
    mail = mailoutbox[0]
    assert "ready for review (1 line)" in mail.subject and "EHR sync" in mail.body and "/cart" in mail.body
    patient = catalog_world["patient"]
    assert patient.last_name not in mail.body + mail.subject and patient.chart_id not in mail.body
    assert AuditEntry.objects.filter(action="api.cart_ready_for_review", actor_label="API key 'EHR sync'").exists()


def test_listing_the_cart_costs_the_same_queries_at_any_size(api, clinic_a, catalog_world):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def add(n):
        patients = [PatientFactory(organization=clinic_a.organization, state="TX") for _ in range(n)]
        api.post("/api/v1/cart/lines", {"lines": [line_body(catalog_world, patient=p.pk) for p in patients]},
                 format="json")
        api.get("/api/v1/cart/lines")  # warm: the key's last use is recorded once a minute
        with CaptureQueriesContext(connection) as queries:
            assert len(api.get("/api/v1/cart/lines").json()) == len(CartLine.objects.all())
        return len(queries)

    assert add(3) == add(12) <= 12
