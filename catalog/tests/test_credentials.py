"""Partner credentials are encrypted at rest; the keys can be rotated without losing them."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from catalog.models import Partner
from catalog.tests.factories import PartnerFactory
from fizy.lib.encryption import DecryptionError

pytestmark = pytest.mark.django_db


def raw_columns(partner) -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, webhook_secret, webhook_secret_next FROM catalog_partner WHERE id = %s", [partner.pk])
        return cursor.fetchone()


def test_the_secret_columns_in_the_database_are_not_the_plain_secrets():
    partner = PartnerFactory(api_key="sk-partner-plain-key", webhook_secret_next="whsec_" + "B" * 32)
    stored = raw_columns(partner)
    plain = ("sk-partner-plain-key", partner.webhook_secret, partner.webhook_secret_next)
    for column, secret in zip(stored, plain):
        assert secret not in column and column.startswith("gAAAAA")  # a Fernet token
    again = Partner.objects.get(pk=partner.pk)
    assert (again.api_key, again.webhook_secret, again.webhook_secret_next) == plain
    assert PartnerFactory(api_key="").api_key == "" and raw_columns(Partner.objects.last())[0] == ""


def test_keys_rotate_without_losing_a_secret(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    partner = PartnerFactory(api_key="sk-rotate-me")
    before = raw_columns(partner)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]  # step 2: new key first, old one still there
    assert Partner.objects.get(pk=partner.pk).api_key == "sk-rotate-me"
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)  # step 3
    assert "catalog.Partner" in out.getvalue()
    after = raw_columns(partner)
    assert after[0] != before[0] and Fernet(new_key).decrypt(after[0].encode()) == b"sk-rotate-me"
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # step 4: the old key is gone
    assert Partner.objects.get(pk=partner.pk).api_key == "sk-rotate-me"
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the wrong environment's key
    with pytest.raises(DecryptionError, match="FIELD_ENCRYPTION_KEYS"):
        Partner.objects.get(pk=partner.pk)
