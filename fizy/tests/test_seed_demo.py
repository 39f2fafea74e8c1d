import pytest
from django.apps import apps
from django.core.management import call_command

from catalog.models import Offering, Partner, Product
from clinics.models import Clinic, Membership, Organization, Patient, Prescriber, PrescriberLicense

OUR_APPS = ["clinics", "catalog", "routing", "carts", "fulfillment", "notices"]


def is_history(model) -> bool:
    return hasattr(model, "instance_type")  # a django-simple-history model


def _counts():
    # History rows (django-simple-history) record each save, a second run's too: not counted.
    models = [m for app in OUR_APPS for m in apps.get_app_config(app).get_models() if not is_history(m)]
    from django.contrib.auth import get_user_model

    models.append(get_user_model())
    return {m._meta.label: m.objects.count() for m in models}


@pytest.mark.django_db
def test_seed_demo_twice_changes_no_row_counts(capsys):
    call_command("seed_demo")
    first = _counts()
    call_command("seed_demo")
    assert _counts() == first
    out = capsys.readouterr().out
    assert "austin" in out and "support" in out and "integrations2" in out and "fizy-demo-2026" in out


@pytest.mark.django_db
def test_seed_demo_prints_a_clinic_api_key_that_works(capsys):
    from rest_framework.test import APIClient

    from fizy.demo_data import DEMO_API_KEY

    call_command("seed_demo")
    call_command("seed_demo")
    assert DEMO_API_KEY[2] in capsys.readouterr().out
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {DEMO_API_KEY[2]}")
    assert api.get("/api/v1/cart").status_code == 200


@pytest.mark.django_db
def test_seed_demo_is_a_realistic_world():
    call_command("seed_demo")
    assert Organization.objects.count() == 2
    assert Clinic.objects.count() == 3
    assert Partner.objects.count() >= 3
    assert len({frozenset(p.state_licenses.values_list("state", flat=True)) for p in Partner.objects.all()}) >= 3
    assert Product.objects.count() >= 12
    assert Product.objects.exclude(dea_schedule="").exists()
    assert Product.objects.filter(requires_clinical_difference=True).exists()
    assert Patient.objects.count() >= 40
    assert Patient.objects.values("state").distinct().count() >= 8
    assert Prescriber.objects.count() >= 6
    from django.utils import timezone

    assert PrescriberLicense.objects.filter(expires_on__lt=timezone.localdate()).exists()
    assert Offering.objects.filter(stock_quantity=0).exists()
    assert Membership.objects.values("clinic").distinct().count() == 3


@pytest.mark.django_db
def test_every_seeded_row_passes_model_validation():
    call_command("seed_demo")
    for app in ["clinics", "catalog"]:
        for model in apps.get_app_config(app).get_models():
            if is_history(model):
                continue
            for obj in model.objects.all():
                obj.full_clean()


@pytest.mark.django_db
def test_seeded_history_is_in_the_past_and_fills_the_refill_queue():
    from django.utils import timezone

    from carts.selectors import refills_due
    from fulfillment.models import Order

    call_command("seed_demo")
    assert Order.objects.exists()
    assert not Order.objects.filter(placed_at__gt=timezone.now()).exists()
    austin = Clinic.objects.get(name="Bloom Wellness — Austin")
    assert len(refills_due(clinic=austin, within_days=7)) == 20
