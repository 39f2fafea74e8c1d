import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from clinics.tests.factories import ClinicFactory, OrganizationFactory, PatientFactory, PrescriberFactory


@pytest.mark.django_db
def test_chart_id_is_unique_within_an_organization():
    org = OrganizationFactory()
    PatientFactory(organization=org, chart_id="C-100")
    with pytest.raises(IntegrityError), transaction.atomic():
        PatientFactory(organization=org, chart_id="C-100")


@pytest.mark.django_db
def test_same_chart_id_is_allowed_in_another_organization():
    PatientFactory(chart_id="C-100")
    other = PatientFactory(chart_id="C-100")
    assert other.pk


@pytest.mark.django_db
def test_chart_id_clash_is_reported_as_a_form_error_too():
    org = OrganizationFactory()
    PatientFactory(organization=org, chart_id="C-7")
    clash = PatientFactory.build(organization=org, chart_id="C-7")
    with pytest.raises(ValidationError) as exc:
        clash.full_clean()
    assert exc.value.messages == ["Another patient of this organization already has this chart ID."]


@pytest.mark.django_db
@pytest.mark.parametrize("state, zip_code, bad_field", [
    ("XX", "78701", "state"),
    ("tx", "78701", "state"),
    ("TX", "7870", "zip_code"),
    ("TX", "78701-12", "zip_code"),
    ("TX", "ABCDE", "zip_code"),
])
def test_patient_state_and_zip_are_validated(state, zip_code, bad_field):
    patient = PatientFactory.build(organization=OrganizationFactory(), state=state, zip_code=zip_code)
    with pytest.raises(ValidationError) as exc:
        patient.full_clean()
    assert set(exc.value.message_dict) == {bad_field}


@pytest.mark.django_db
@pytest.mark.parametrize("state, zip_code", [("TX", "78701"), ("CA", "94103-1234"), ("DC", "20001"), ("PR", "00901")])
def test_patient_accepts_real_states_and_zips(state, zip_code):
    PatientFactory.build(organization=OrganizationFactory(), state=state, zip_code=zip_code).full_clean()


@pytest.mark.django_db
def test_clinic_rejects_npi_with_bad_check_digit_and_bad_dea():
    clinic = ClinicFactory.build(organization=OrganizationFactory(), npi="1234567890", dea_number="AB1234567")
    with pytest.raises(ValidationError) as exc:
        clinic.full_clean()
    assert "check digit" in exc.value.message_dict["npi"][0]
    assert "check digit" in exc.value.message_dict["dea_number"][0]


@pytest.mark.django_db
def test_prescriber_npi_is_validated():
    prescriber = PrescriberFactory.build(organization=OrganizationFactory(), npi="12345")
    with pytest.raises(ValidationError) as exc:
        prescriber.full_clean()
    assert exc.value.message_dict["npi"] == ["An NPI is exactly 10 digits."]


def test_missing_address_fields_are_named():
    patient = PatientFactory.build(address_line1="", zip_code="")
    assert patient.missing_address_fields() == ["address_line1", "zip_code"]
    assert not patient.address_is_complete
