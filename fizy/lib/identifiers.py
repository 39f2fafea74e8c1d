"""Validators for US healthcare identifiers (NPI, DEA registration numbers).

NPI: ten digits whose last digit is the Luhn check digit computed over the prefix 80840 and the
first nine digits (CMS, "NPI check digit"). We use python-stdnum's Luhn implementation.

DEA: two letters and seven digits. The first letter is the registrant type; the second is the
first letter of the registrant's last name (or business name), or 9 for some mid-level
practitioners. Check digit: (d1 + d3 + d5) + 2 * (d2 + d4 + d6); its last digit equals d7.
"""

import re

from django.core.exceptions import ValidationError
from stdnum import luhn
from stdnum.exceptions import ValidationError as StdnumError

DEA_REGISTRANT_TYPES = set("ABCDEFGHJKLMPRSTUX")
_DEA_RE = re.compile(r"^([A-Z])([A-Z9])(\d{7})$")


def npi_is_valid(value: str) -> bool:
    if not (isinstance(value, str) and len(value) == 10 and value.isdigit()):
        return False
    try:
        luhn.validate("80840" + value)
    except StdnumError:
        return False
    return True


def validate_npi(value: str) -> None:
    if not (isinstance(value, str) and len(value) == 10 and value.isdigit()):
        raise ValidationError("An NPI is exactly 10 digits.", code="npi_format")
    if not npi_is_valid(value):
        raise ValidationError(
            "This NPI fails its check digit; re-check the number against the NPPES registry.",
            code="npi_check_digit",
        )


def validate_dea(value: str) -> None:
    match = _DEA_RE.match(value or "")
    if not match:
        raise ValidationError(
            "A DEA number is two letters followed by seven digits, e.g. AB1234563.", code="dea_format"
        )
    registrant, _, digits = match.groups()
    if registrant not in DEA_REGISTRANT_TYPES:
        raise ValidationError(
            f"'{registrant}' is not a DEA registrant type; the first letter must be one of "
            f"{''.join(sorted(DEA_REGISTRANT_TYPES))}.",
            code="dea_registrant_type",
        )
    d = [int(c) for c in digits]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    if check != d[6]:
        raise ValidationError(
            "This DEA number fails its check digit; re-check it against the DEA certificate.",
            code="dea_check_digit",
        )


def npi_from_base(base9: str) -> str:
    """Complete nine digits into a valid NPI by appending the check digit (for seeds and tests)."""
    return base9 + luhn.calc_check_digit("80840" + base9)


def dea_from_base(letters: str, base6: str) -> str:
    """Complete two letters and six digits into a valid DEA number (for seeds and tests)."""
    d = [int(c) for c in base6]
    return f"{letters}{base6}{(d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10}"


# A clinic's chart id (medical record number): letters, digits, '-', '_' and '.', beginning with a
# letter or a digit — so it can never be read as a spreadsheet formula or carry markup.
CHART_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
CHART_ID_RULE = "A chart ID uses only letters, digits, '-', '_' and '.', and begins with a letter or a digit."


def validate_chart_id(value: str) -> None:
    if not CHART_ID_RE.match(value or ""):
        raise ValidationError(f"{CHART_ID_RULE} '{value}' does not.", code="chart_id_format")
