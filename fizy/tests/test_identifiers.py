import pytest
from django.core.exceptions import ValidationError

from fizy.lib.identifiers import dea_from_base, npi_from_base, npi_is_valid, validate_dea, validate_npi


def dea_is_valid(value: str) -> bool:
    try:
        validate_dea(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("npi", ["1234567893", "1245319599", "1003000126", npi_from_base("170013341")])
def test_valid_npis_pass(npi):
    assert npi_is_valid(npi)
    validate_npi(npi)


@pytest.mark.parametrize(
    "npi, code",
    [
        ("1234567890", "npi_check_digit"),  # last digit should be 3
        ("1234567894", "npi_check_digit"),
        ("123456789", "npi_format"),  # nine digits
        ("12345678933", "npi_format"),
        ("12345678a3", "npi_format"),
        ("", "npi_format"),
    ],
)
def test_invalid_npis_say_what_is_wrong(npi, code):
    assert not npi_is_valid(npi)
    with pytest.raises(ValidationError) as exc:
        validate_npi(npi)
    assert exc.value.code == code


@pytest.mark.parametrize("dea", ["AB1234563", dea_from_base("BP", "482615"), "MJ9876547"])
def test_valid_dea_numbers_pass(dea):
    assert dea_is_valid(dea), dea


@pytest.mark.parametrize(
    "dea, code",
    [
        ("AB1234567", "dea_check_digit"),
        ("AB123456", "dea_format"),
        ("A1234563", "dea_format"),
        ("ab1234563", "dea_format"),
        ("ZB1234563", "dea_registrant_type"),
        ("", "dea_format"),
    ],
)
def test_invalid_dea_numbers_say_what_is_wrong(dea, code):
    with pytest.raises(ValidationError) as exc:
        validate_dea(dea)
    assert exc.value.code == code
    assert not dea_is_valid(dea)
