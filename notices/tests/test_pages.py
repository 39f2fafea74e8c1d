"""The clinic's notices pages: who may see what, consent, links, settings and templates."""

import pytest
from django.contrib.auth.models import Permission

from clinics.models import AuditEntry, Patient
from clinics.tests.factories import PatientFactory
from conftest import verified_login
from notices.models import Message, Notice, NoticeSettings, NoticeTemplate, TrackingLink
from notices.tests.conftest import at_local, consenting_patient, move, order_for, run_until_sent
from notices.tracking import tracking_link_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(clinic_a, clinic_b):
    """A text went to a patient of clinic A, and one to a patient of clinic B."""
    ann = consenting_patient(clinic_a.organization, first_name="Annabel", last_name="Quist", phone="+15125550188")
    ben = consenting_patient(clinic_b.organization, first_name="Benedict", last_name="Ruiz")
    order_a, order_b = order_for(clinic_a, [ann]), order_for(clinic_b, [ben])
    move([*order_a.lines.all(), *order_b.lines.all()], "sent")
    run_until_sent(at_local(clinic_a, 12))
    return {"ann": ann, "ben": ben, "order_a": order_a, "order_b": order_b}


def test_clinic_admins_see_their_clinics_messages_masked(client, clinic_admin_a, sent):
    verified_login(client, clinic_admin_a)
    page = client.get("/notices/").content.decode()
    assert "Annabel Q." in page and "•••-•••-0188" in page and "+15125550188" not in page
    assert "Hi Annabel, the pharmacy has received your order" in page
    assert "Benedict" not in page
    assert 'hx-trigger="every 5s"' in page
    assert 'href="/notices/"' in client.get("/orders/").content.decode()  # in the navigation


def test_coordinators_and_strangers_do_not_see_the_notices_page(client, client_alice, sent):
    response = client_alice.get("/notices/")
    assert response.status_code == 403 and "Annabel" not in response.content.decode()
    client.logout()
    assert client.get("/notices/").status_code == 302


def test_staff_with_the_permission_see_every_clinic(client, make_staff, sent, clinic_b):
    staff = make_staff("norole")
    verified_login(client, staff)
    assert client.get("/notices/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    staff = type(staff).objects.get(pk=staff.pk)  # permissions are cached on the user
    verified_login(client, staff)
    page = client.get("/notices/").content.decode()
    assert "Annabel" in page and "Benedict" in page
    page = client.get(f"/notices/?clinic={clinic_b.pk}").content.decode()
    assert "Benedict" in page and "Annabel" not in page
    assert client.get("/notices/?clinic=²").status_code == 200  # not a number: all clinics


def test_an_orders_patient_updates_and_revoking_a_link(client_alice, alice, sent, clinic_a):
    order = sent["order_a"]
    page = client_alice.get(f"/notices/orders/{order.pk}").content.decode()
    assert "Annabel Quist" in page and "Order received by the pharmacy" in page and "/t/" in page
    link = TrackingLink.objects.get(order=order)
    response = client_alice.post(f"/notices/orders/{order.pk}/patients/{sent['ann'].pk}/revoke")
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at and link.revoked_by == alice
    assert AuditEntry.objects.filter(action="tracking_link.revoke", clinic=clinic_a, patient=sent["ann"]).exists()
    client_alice.post(f"/notices/orders/{order.pk}/patients/{sent['ann'].pk}/new-link")
    assert TrackingLink.objects.filter(order=order, revoked_at__isnull=True).count() == 1


def test_another_clinics_order_and_patient_are_not_found(client_alice, sent):
    order_b, ben = sent["order_b"], sent["ben"]
    assert client_alice.get(f"/notices/orders/{order_b.pk}").status_code == 404
    tracking_link_for(order_id=order_b.pk, patient_id=ben.pk)
    assert client_alice.post(f"/notices/orders/{order_b.pk}/patients/{ben.pk}/revoke").status_code == 404
    assert client_alice.post(f"/notices/orders/{order_b.pk}/patients/{ben.pk}/new-link").status_code == 404
    assert client_alice.get(f"/notices/patients/{ben.pk}").status_code == 404
    assert TrackingLink.objects.get(order=order_b).revoked_at is None


def test_a_coordinator_records_consent_and_an_opt_out(client_alice, alice, clinic_a):
    patient = PatientFactory(organization=clinic_a.organization, first_name="Cora", phone="+15125550101")
    response = client_alice.post(f"/notices/patients/{patient.pk}", {"contact_preference": "sms", "consent": "on"})
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.contact_preference == "sms" and patient.notices_consent_at is not None
    entry = AuditEntry.objects.get(action="patient.notices_consent", patient=patient)
    assert entry.actor == alice and entry.detail["consent"] is True

    client_alice.post(f"/notices/patients/{patient.pk}", {"action": "opt_out"})
    patient.refresh_from_db()
    assert patient.notices_opted_out_at is not None
    assert "asked to stop order updates" in client_alice.get(f"/notices/patients/{patient.pk}").content.decode()
    client_alice.post(f"/notices/patients/{patient.pk}", {"action": "opt_in"})
    patient.refresh_from_db()
    assert patient.notices_opted_out_at is None
    assert AuditEntry.objects.filter(patient=patient, action__startswith="patient.notices_opt").count() == 2


def test_consent_needs_somewhere_to_send(client_alice, clinic_a):
    patient = PatientFactory(organization=clinic_a.organization, phone="", email="")
    response = client_alice.post(f"/notices/patients/{patient.pk}", {"contact_preference": "email", "consent": "on"})
    assert response.status_code == 400 and "Add the patient&#x27;s email first" in response.content.decode()
    patient.refresh_from_db()
    assert patient.notices_consent_at is None
    response = client_alice.post(f"/notices/patients/{patient.pk}", {"contact_preference": "fax", "consent": "on"})
    assert response.status_code == 400


def test_the_patient_search_finds_the_clinics_patients(client_alice, clinic_a, clinic_b):
    PatientFactory(organization=clinic_a.organization, first_name="Delia", last_name="Moss")
    PatientFactory(organization=clinic_b.organization, first_name="Delia", last_name="Other")
    page = client_alice.get("/notices/patients?q=Delia").content.decode()
    assert "Delia Moss" in page and "Delia Other" not in page


def test_only_clinic_admins_change_settings_and_templates(client_alice, client, clinic_admin_a, clinic_a):
    assert client_alice.get("/notices/settings").status_code == 403
    assert client_alice.post("/notices/templates/shipped/sms", {"body": "x {link}"}).status_code == 403
    verified_login(client, clinic_admin_a)
    response = client.post("/notices/settings", {
        "patient_phone": "+15125550199", "quiet_hours_start": "20:00", "quiet_hours_end": "09:00", "digest_hour": "6",
        "show_products_on_page": "on", "link_valid_days": "14"})
    assert response.status_code == 302
    saved = NoticeSettings.objects.get(clinic=clinic_a)
    assert (saved.quiet_hours_start.hour, saved.quiet_hours_end.hour, saved.digest_hour, saved.link_valid_days) == (20, 9, 6, 14)
    assert not saved.products_in_messages
    assert AuditEntry.objects.filter(action="notices.settings_change", clinic=clinic_a).exists()
    response = client.post("/notices/settings", {"quiet_hours_start": "25:00", "digest_hour": "30", "link_valid_days": "0"})
    assert response.status_code == 400


def test_a_clinic_template_is_checked_previewed_and_used(client, clinic_admin_a, clinic_a):
    verified_login(client, clinic_admin_a)
    page = client.get("/notices/templates/shipped/sms").content.decode()
    assert "{clinic}: Hi {first_name}, {items} has shipped ({carrier}). Track it: {link}" in page  # the default
    assert "Hi Jordan, your order has shipped (UPS)" in page  # its preview

    response = client.post("/notices/templates/shipped/sms", {"body": "Hi {first_name}, born {date_of_birth}! {link}"})
    assert response.status_code == 400 and "{date_of_birth} is not a placeholder" in response.content.decode()
    response = client.post("/notices/templates/shipped/sms", {"body": "Your box is on its way, {first_name}."})
    assert response.status_code == 400 and "Include {link}" in response.content.decode()
    assert not NoticeTemplate.objects.exists()

    preview = client.post("/notices/templates/shipped/sms/preview",
                          {"body": "{first_name}: {items} left the pharmacy. {link}"}).content.decode()
    assert "Jordan: your order left the pharmacy. https://fizy.example/t/sample-link Reply STOP to opt out." in preview
    assert "<html" not in preview

    assert client.post("/notices/templates/placed/sms", {"body": "{clinic}: {first_name}, we sent your order. {link}"}).status_code == 302
    patient = consenting_patient(clinic_a.organization, first_name="Ezra")
    move(order_for(clinic_a, [patient]).lines.all(), "sent")
    run_until_sent(at_local(clinic_a, 12))
    assert Message.objects.get(notice__patient=patient).body.startswith(f"{clinic_a.name}: Ezra, we sent your order. ")

    client.post("/notices/templates/placed/sms", {"action": "reset"})
    assert not NoticeTemplate.objects.exists()
    assert client.get("/notices/templates/nope/sms").status_code == 404


def test_a_patient_who_never_agreed_is_listed_as_not_sent(client, clinic_admin_a, clinic_a):
    patient = PatientFactory(organization=clinic_a.organization, first_name="Fern",
                             contact_preference=Patient.ContactPreference.SMS)
    move(order_for(clinic_a, [patient]).lines.all(), "sent")
    run_until_sent(at_local(clinic_a, 12))
    assert Notice.objects.get().status == "not_sent"
    verified_login(client, clinic_admin_a)
    page = client.get("/notices/").content.decode()
    assert "agreement to order updates is not recorded" in page and "Fern" in page


@pytest.mark.parametrize("n_patients", [1, 8])
def test_the_notices_pages_cost_the_same_queries_for_few_or_many(client, clinic_admin_a, clinic_a, n_patients,
                                                                  django_assert_max_num_queries):
    patients = [consenting_patient(clinic_a.organization, preference=Patient.ContactPreference.SMS_AND_EMAIL)
                for _ in range(n_patients)]
    order = order_for(clinic_a, patients)
    move(order.lines.all(), "sent")
    run_until_sent(at_local(clinic_a, 12))
    verified_login(client, clinic_admin_a)
    client.get("/notices/")  # the session's clinic is set on a first visit
    # 9, the Needs attention badge's count, the session's second-factor device, the PHI access log's INSERT
    with django_assert_max_num_queries(12):
        page = client.get("/notices/").content.decode()
    assert page.count('data-channel="sms"') == n_patients
    with django_assert_max_num_queries(12):
        page = client.get(f"/notices/orders/{order.pk}").content.decode()
    assert page.count("Order received by the pharmacy") == n_patients
