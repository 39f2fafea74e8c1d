from decimal import Decimal

import pytest
from django.urls import reverse

from fizy.templatetags.fizy import money, pk_url


@pytest.mark.parametrize("value, shown", [
    (Decimal("1234.5"), "$1,234.50"), (Decimal("0"), "$0.00"), (Decimal("0.456"), "$0.46"), (None, "—"), (7, "$7.00"),
])
def test_money_shows_dollars_and_cents(value, shown):
    assert money(value) == shown


@pytest.mark.parametrize("pk", [1, 42, 987654321, 1234567890])
def test_pk_url_is_the_same_as_reverse(pk):
    for name in ["carts:line", "carts:line-remove", "carts:patient-fix"]:
        assert pk_url(pk, name) == reverse(name, args=[pk])
