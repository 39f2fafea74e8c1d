import datetime
import itertools

import factory
from django.contrib.auth import get_user_model

from clinics.models import Clinic, DEARegistration, Membership, Organization, Patient, Prescriber, PrescriberLicense
from fizy.lib.identifiers import dea_from_base, npi_from_base

_npi = itertools.count(100000001)
_dea = itertools.count(100001)


def next_npi() -> str:
    return npi_from_base(str(next(_npi)))


def next_dea(letters="BX") -> str:
    return dea_from_base(letters, str(next(_dea)))


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "pw-for-tests-1")
        if create:
            self.save(update_fields=["password"])


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clinic

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Clinic {n}")
    npi = factory.LazyFunction(next_npi)
    address_line1 = "100 Main St"
    city = "Austin"
    state = "TX"
    zip_code = "78701"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    clinic = factory.SubFactory(ClinicFactory)
    role = Membership.Role.COORDINATOR


class PrescriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prescriber

    organization = factory.SubFactory(OrganizationFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    credentials = "MD"
    npi = factory.LazyFunction(next_npi)


class PrescriberLicenseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PrescriberLicense

    prescriber = factory.SubFactory(PrescriberFactory)
    state = "TX"
    number = factory.Sequence(lambda n: f"LIC-{n:05d}")
    expires_on = factory.LazyFunction(lambda: datetime.date.today() + datetime.timedelta(days=365))


class DEARegistrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DEARegistration

    prescriber = factory.SubFactory(PrescriberFactory)
    state = "TX"
    number = factory.LazyFunction(next_dea)
    expires_on = factory.LazyFunction(lambda: datetime.date.today() + datetime.timedelta(days=365))


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    organization = factory.SubFactory(OrganizationFactory)
    chart_id = factory.Sequence(lambda n: f"CH-{n:05d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = datetime.date(1980, 5, 17)
    phone = "+15125550100"
    email = factory.LazyAttribute(lambda p: f"{p.chart_id.lower()}@example.com")
    address_line1 = "200 Congress Ave"
    city = "Austin"
    state = "TX"
    zip_code = "78701"
