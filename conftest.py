"""Shared personas: a coordinator of clinic A, a coordinator of clinic B, a pharmacy staff user."""

import pytest
from django.db import connection

from clinics.models import Membership
from clinics.tests.factories import ClinicFactory, MembershipFactory, UserFactory

PASSWORD = "pw-for-tests-1"


def pytest_collection_modifyitems(config, items):
    # Decided at collection time from the configured database, not from a connection.
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://…")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def clinic_a(db):
    return ClinicFactory(name="Clinic A")


@pytest.fixture
def clinic_b(db):
    return ClinicFactory(name="Clinic B")


@pytest.fixture
def alice(clinic_a):
    """Coordinator of clinic A."""
    return MembershipFactory(user=UserFactory(username="alice"), clinic=clinic_a).user


@pytest.fixture
def bob(clinic_b):
    """Coordinator of clinic B."""
    return MembershipFactory(user=UserFactory(username="bob"), clinic=clinic_b).user


@pytest.fixture
def charlie(db):
    """Pharmacy staff: reaches the admin, belongs to no clinic."""
    from django.contrib.auth.models import Permission

    user = UserFactory(username="charlie", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["clinics", "catalog", "routing", "carts", "fulfillment"])
    )
    return user


@pytest.fixture
def clinic_admin_a(clinic_a):
    return MembershipFactory(user=UserFactory(username="alma"), clinic=clinic_a, role=Membership.Role.CLINIC_ADMIN).user


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def client_bob(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def client_charlie(client, charlie):
    client.force_login(charlie)
    return client


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
