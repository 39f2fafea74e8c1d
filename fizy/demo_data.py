"""The demo world: organizations, clinics, partners, products, prescribers and patients.

Plain data, read by ``seed_demo``. Every identifier is derived deterministically so that a
second run finds and updates the same rows instead of creating new ones."""

import datetime
from decimal import Decimal as D

PASSWORD = "fizy-demo-2026"
# The demo clinic API key (Austin, every scope): public, like the password, so that the curl
# examples of docs/clinic-api.md run against the demo. Created only where sandboxes are allowed.
DEMO_API_KEY = ("Bloom Wellness — Austin", "Demo EHR", "fz_demo0000_bloom-austin-demo-key-not-for-production")

ORGANIZATIONS = {
    "Bloom Wellness Group": [
        {"name": "Bloom Wellness — Austin", "npi9": "184201557", "dea": ("FB", "210331"),
         "address": ("1200 S Congress Ave", "Suite 300", "Austin", "TX", "78704"),
         "billing": ("Dana Whitfield", "billing@bloomwellness.example", "+15125550143"), "tz": "America/Chicago",
         "login": "austin", "card": "pm_sandbox_visa"},
        {"name": "Bloom Wellness — Denver", "npi9": "184201558", "dea": None,
         "address": ("1550 Wynkoop St", "Suite 210", "Denver", "CO", "80202"),
         "billing": ("Dana Whitfield", "billing@bloomwellness.example", "+13035550188"), "tz": "America/Denver",
         "login": "denver", "card": "pm_sandbox_visa"},
    ],
    "Vitalis Telehealth": [
        {"name": "Vitalis Telehealth — Miami", "npi9": "193877420", "dea": ("FV", "554120"),
         "address": ("801 Brickell Ave", "Floor 9", "Miami", "FL", "33131"),
         "billing": ("Marco Reyes", "ap@vitalis.example", "+13055550121"), "tz": "America/New_York",
         "login": "miami", "card": "pm_sandbox_declined"},
    ],
}

# A user who belongs to both Bloom clinics, as clinic admin (exercises the clinic switcher).
MULTI_CLINIC_LOGIN = ("bloom.admin", "Bloom Wellness Group", ["Bloom Wellness — Austin", "Bloom Wellness — Denver"])
# Every demo clinic has a clinic admin (Billing: the saved card); Miami's is its own.
CLINIC_ADMIN_LOGINS = [("vitalis.admin", "Marco", "Reyes", ["Vitalis Telehealth — Miami"])]
# Fizy's own staff, one login per role (clinics/roles.py); finance2 and integrations2 are the second
# staff member who approves a large refund or a partner API URL change.
STAFF_LOGINS = [
    ("support", "Sam", "Support", "Support"),
    ("dispatch", "Dee", "Dispatch", "Dispatch"),
    ("finance", "Fran", "Finance", "Finance"),
    ("finance2", "Felix", "Finance", "Finance"),
    ("integrations", "Ira", "Integrations", "Integrations"),
    ("integrations2", "Iris", "Integrations", "Integrations"),
    ("useradmin", "Uma", "Useradmin", "User admin"),
]

# The demo partners are the built-in sandbox pharmacy (fulfillment/sandbox.py) served by this
# same site: orders are POSTed to it (at settings.SANDBOX_WEBHOOK_BASE_URL + /sandbox/partners/<slug>),
# and it answers with signed webhooks over the next minutes.

PARTNERS = [
    {"slug": "cedar", "name": "Cedar Compounding Pharmacy", "legitscript": "LS-48213-503A",
     "states": ["TX", "CO", "FL", "AZ", "NM", "OK", "GA"], "email": "orders@cedarrx.example",
     "api_key": "sandbox-key-cedar",
     "webhook_secret": "whsec_uqH7o3czGdx+PvPFKDwzGYpVbs02sQehvAfvO45sRLo="},
    {"slug": "harbor", "name": "Harbor 503A Pharmacy", "legitscript": "LS-51877-503A",
     "states": ["CA", "FL", "NY", "NJ", "PA", "TX", "IL"], "email": "support@harbor503a.example",
     "api_key": "sandbox-key-harbor",
     "webhook_secret": "whsec_0883D8Xbs1SOX4PAXH34xBV5KOtMtWoMo7SZg1UbSzg="},
    {"slug": "summit", "name": "Summit Sterile Compounding", "legitscript": "LS-60102-503A",
     "states": ["CO", "UT", "AZ", "NV", "WA", "OR", "CA", "TX"], "email": "pharmacy@summitsterile.example",
     "api_key": "sandbox-key-summit",
     "webhook_secret": "whsec_66ZXo9i0OBK7Q4a4W/ZjUs97TaWEme+uz7S8OAcCjoM="},
]

# sku, name, strength, form, unit, schedule, max qty, needs clinical-difference statement
PRODUCTS = [
    ("FZ-SEMA-25", "Semaglutide", "2.5 mg/mL, 2 mL vial", "injectable", "vial", "", 4, True),
    ("FZ-TIRZ-10", "Tirzepatide", "10 mg/mL, 2 mL vial", "injectable", "vial", "", 4, True),
    ("FZ-TESC-200", "Testosterone cypionate", "200 mg/mL, 10 mL vial", "injectable", "vial", "III", 2, False),
    ("FZ-SERM-9", "Sermorelin acetate", "9 mg vial", "injectable", "vial", "", 3, False),
    ("FZ-NAD-200", "NAD+", "200 mg/mL, 10 mL vial", "injectable", "vial", "", 3, False),
    ("FZ-B12-5", "Methylcobalamin", "5 mg/mL, 10 mL vial", "injectable", "vial", "", 3, False),
    ("FZ-GLUT-200", "Glutathione", "200 mg/mL, 10 mL vial", "injectable", "vial", "", 3, False),
    ("FZ-LDN-45", "Naltrexone (low dose)", "4.5 mg", "capsule", "capsule", "", 90, False),
    ("FZ-PROG-100", "Progesterone", "100 mg", "capsule", "capsule", "", 90, False),
    ("FZ-BIEST-80", "Bi-Est (estriol/estradiol 80:20)", "2.5 mg/g, 30 g", "cream", "tube", "", 3, False),
    ("FZ-KET-150", "Ketamine", "150 mg", "troche", "troche", "III", 30, False),
    ("FZ-SILD-20", "Sildenafil", "20 mg", "troche", "troche", "", 30, False),
    ("FZ-PHEN-375", "Phentermine", "37.5 mg", "capsule", "capsule", "IV", 30, False),
    ("FZ-FINMIN-5", "Finasteride / minoxidil", "0.1% / 5%, 60 mL", "spray", "bottle", "", 2, False),
]

# partner slug -> {sku: (unit price, shipping fee, stock)}
OFFERINGS = {
    "cedar": {
        "FZ-SEMA-25": (D("149.00"), D("18.00"), 120), "FZ-TIRZ-10": (D("229.00"), D("18.00"), 80),
        "FZ-TESC-200": (D("64.00"), D("12.00"), 40), "FZ-SERM-9": (D("118.00"), D("18.00"), 25),
        "FZ-LDN-45": (D("0.65"), D("9.00"), 5000), "FZ-PROG-100": (D("0.48"), D("9.00"), 3000),
        "FZ-BIEST-80": (D("42.00"), D("9.00"), 60), "FZ-KET-150": (D("3.10"), D("12.00"), 600),
        "FZ-PHEN-375": (D("1.20"), D("12.00"), 900), "FZ-B12-5": (D("38.00"), D("12.00"), 0),
    },
    "harbor": {
        "FZ-SEMA-25": (D("139.00"), D("25.00"), 200), "FZ-TIRZ-10": (D("239.00"), D("25.00"), 0),
        "FZ-NAD-200": (D("96.00"), D("25.00"), 45), "FZ-B12-5": (D("34.00"), D("15.00"), 150),
        "FZ-GLUT-200": (D("58.00"), D("15.00"), 70), "FZ-LDN-45": (D("0.72"), D("10.00"), 4000),
        "FZ-SILD-20": (D("1.45"), D("10.00"), 1200), "FZ-FINMIN-5": (D("39.00"), D("10.00"), 90),
        "FZ-PROG-100": (D("0.52"), D("10.00"), 0),
    },
    "summit": {
        "FZ-SEMA-25": (D("155.00"), D("15.00"), 60), "FZ-TIRZ-10": (D("219.00"), D("15.00"), 35),
        "FZ-TESC-200": (D("59.00"), D("15.00"), 0), "FZ-SERM-9": (D("109.00"), D("15.00"), 40),
        "FZ-NAD-200": (D("99.00"), D("15.00"), 30), "FZ-GLUT-200": (D("61.00"), D("15.00"), 55),
        "FZ-KET-150": (D("2.95"), D("15.00"), 0), "FZ-B12-5": (D("36.00"), D("15.00"), 80),
    },
}

TODAY = datetime.date(2026, 11, 1)  # credential expiry dates are set relative to a fixed day…
FAR = datetime.date(2028, 6, 30)  # …so that reseeding on another day changes nothing
LAPSED = datetime.date(2025, 9, 30)

# organization -> prescribers: (first, last, credentials, npi9, dea base or None,
#   [(state, license number, expires_on)], [(state, dea base, expires_on)])
PRESCRIBERS = {
    "Bloom Wellness Group": [
        ("Maya", "Patel", "MD", "170013341", ("BP", "482615"),
         [("TX", "TX-P4821", FAR), ("CO", "DR.0061235", FAR)], [("TX", ("BP", "482615"), FAR)]),
        ("James", "Okafor", "DO", "170013342", None,
         [("TX", "TX-Q1107", LAPSED), ("CO", "DR.0070412", FAR)], []),
        ("Rachel", "Kim", "NP", "170013343", None, [("TX", "TX-APRN-33910", FAR)], []),
        ("Luis", "Ortega", "MD", "170013344", ("BO", "731904"),
         [("TX", "TX-R2290", FAR), ("CO", "DR.0059981", FAR), ("AZ", "AZ-51120", FAR), ("NM", "NM-MD-2231", FAR)],
         [("TX", ("BO", "731904"), FAR), ("CO", ("BO", "731905"), LAPSED)]),
    ],
    "Vitalis Telehealth": [
        ("Sarah", "Chen", "MD", "180224451", ("BC", "615208"),
         [("FL", "ME-141208", FAR), ("GA", "GA-077321", FAR), ("NY", "NY-301552", FAR), ("CA", "A-184220", FAR)],
         [("FL", ("BC", "615208"), FAR)]),
        ("Aaron", "Brooks", "MD", "180224452", None,
         [("FL", "ME-119870", LAPSED), ("IL", "036-140022", FAR), ("WA", "MD61022310", FAR)], []),
        ("Nina", "Alvarez", "PA", "180224453", None,
         [("FL", "PA-9107331", FAR), ("TX", "TX-PA-12044", FAR), ("NC", "NC-PA-004417", FAR)], []),
    ],
}

_FIRST = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "Mateo", "Isabella", "Lucas", "Mia",
          "Levi", "Amelia", "Ethan", "Harper", "Jackson", "Evelyn", "Aiden", "Abigail", "Carter", "Emily",
          "Wyatt", "Ella", "Owen", "Grace", "Caleb", "Chloe", "Isaac", "Nora", "Ryan", "Lily", "Nathan",
          "Zoe", "Adrian", "Hannah", "Julian", "Layla", "Miles", "Aria", "Dominic", "Stella", "Xavier",
          "Camila", "Elias", "Ruby", "Silas"]
_LAST = ["Nguyen", "Garcia", "Johnson", "Williams", "Brown", "Martinez", "Davis", "Lopez", "Wilson", "Anderson",
         "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
         "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
         "Scott", "Torres", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
         "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips"]

# (street, city, state, zip) per state, cycled through for patients
_ADDRESSES = {
    "TX": [("4512 Avenue H", "Austin", "78751"), ("915 Heights Blvd", "Houston", "77008"),
           ("2301 N Akard St", "Dallas", "75201"), ("118 Broadway St", "San Antonio", "78205")],
    "CO": [("2790 Pearl St", "Boulder", "80302"), ("1644 Platte St", "Denver", "80202"),
           ("330 S Tejon St", "Colorado Springs", "80903")],
    "AZ": [("7014 E Camelback Rd", "Scottsdale", "85251"), ("44 W University Dr", "Tempe", "85281")],
    "NM": [("1912 Central Ave SE", "Albuquerque", "87106")],
    "OK": [("1100 N Hudson Ave", "Oklahoma City", "73103")],
    "FL": [("1450 Ocean Dr", "Miami Beach", "33139"), ("220 E Bay St", "Jacksonville", "32202"),
           ("501 N Orange Ave", "Orlando", "32801"), ("80 SW 8th St", "Miami", "33130")],
    "GA": [("675 Ponce De Leon Ave NE", "Atlanta", "30308")],
    "NY": [("245 W 17th St", "New York", "10011"), ("61 Smith St", "Brooklyn", "11201")],
    "CA": [("1830 Sunset Blvd", "Los Angeles", "90026"), ("400 Valencia St", "San Francisco", "94103")],
    "IL": [("1421 N Milwaukee Ave", "Chicago", "60622")],
    "WA": [("1520 Pike Pl", "Seattle", "98101")],
    "NC": [("310 Hillsborough St", "Raleigh", "27603")],
}

# organization -> chart prefix, states of its patients (one patient each, cycled), patient count
PATIENT_PLAN = {
    "Bloom Wellness Group": ("BW", ["TX", "TX", "CO", "TX", "CO", "AZ", "TX", "NM", "CO", "OK", "TX", "CO", "AZ"], 26),
    "Vitalis Telehealth": ("VT", ["FL", "FL", "GA", "NY", "CA", "FL", "IL", "WA", "NC", "FL", "CA", "NY"], 20),
}


NOTICES_CONSENT_AT = datetime.datetime(2026, 6, 1, 15, 0, tzinfo=datetime.UTC)
LANDLINE = "+15005550009"  # the SMS providers' test number that cannot receive texts


def patients_for(org_name: str):
    """Yield the deterministic patient records of an organization."""
    prefix, states, count = PATIENT_PLAN[org_name]
    offset = 0 if prefix == "BW" else 23
    per_state_seen: dict[str, int] = {}
    for i in range(count):
        state = states[i % len(states)]
        n = per_state_seen.get(state, 0)
        per_state_seen[state] = n + 1
        street, city, zip_code = _ADDRESSES[state][n % len(_ADDRESSES[state])]
        first = _FIRST[(i + offset) % len(_FIRST)]
        last = _LAST[(i * 7 + offset) % len(_LAST)]
        record = {
            "chart_id": f"{prefix}-{1001 + i}",
            "first_name": first,
            "last_name": last,
            "date_of_birth": datetime.date(1958 + (i * 3) % 40, 1 + (i * 5) % 12, 1 + (i * 11) % 28),
            "phone": f"+1{'512' if prefix == 'BW' else '305'}555{1000 + i:04d}",
            "email": f"{first.lower()}.{last.lower()}{i}@mail.example",
            "address_line1": f"{100 + i * 13} {street.split(' ', 1)[1]}" if i % 2 else street,
            "address_line2": f"Apt {i + 2}" if i % 4 == 0 else "",
            "city": city,
            "state": state,
            "zip_code": zip_code,
        }
        # Order updates: most patients agreed to texts, some to email or both; one never agreed,
        # one asked to stop, and one number is a landline (texts fail, the email goes instead).
        record["contact_preference"] = "email" if i % 6 == 5 else "sms_and_email" if i % 6 == 2 else "sms"
        record["notices_consent_at"] = None if i == 13 else NOTICES_CONSENT_AT
        record["notices_opted_out_at"] = NOTICES_CONSENT_AT + datetime.timedelta(days=40) if i == 11 else None
        if i == 4:
            record["phone"] = LANDLINE
        # A few records that the cart's preflight must catch.
        if i == 5:
            record["date_of_birth"] = None
        if i == 9:
            record["address_line1"] = ""
        yield record

# Routing rules staff have set up: name, priority, product sku or None, states, organization or None, partner slug.
ROUTING_RULES = [
    ("TX semaglutide → Cedar", 10, "FZ-SEMA-25", ["TX"], None, "cedar"),
    ("Vitalis FL tirzepatide → Harbor", 20, "FZ-TIRZ-10", ["FL"], "Vitalis Telehealth", "harbor"),  # Harbor is out of stock
    ("Colorado NAD+ → Summit", 30, "FZ-NAD-200", ["CO"], None, "summit"),
]

# Past orders, so that the refills-due queue has patients on refill day. For each clinic: the
# patients (by chart id) who got a product some days ago, relative to the day the seed runs.
# (chart id, product sku, quantity, days supply, days ago, prescriber last name)
HISTORY_PRESCRIBER_BY_STATE = {"TX": "Patel", "CO": "Patel", "AZ": "Ortega", "NM": "Ortega",
                               "FL": "Chen", "GA": "Chen", "NY": "Chen", "CA": "Chen", "IL": "Brooks", "WA": "Brooks",
                               "NC": "Alvarez"}
HISTORY_SIG = {
    "FZ-SEMA-25": "Inject 0.25 mg (10 units) subcutaneously once weekly",
    "FZ-LDN-45": "Take 1 capsule by mouth at bedtime",
    "FZ-PROG-100": "Take 1 capsule by mouth at bedtime on days 1-25 of the cycle",
    "FZ-SILD-20": "Dissolve 1 troche under the tongue 1 hour before activity, at most once daily",
    "FZ-BIEST-80": "Apply 1 g to the inner forearm once daily in the evening",
    "FZ-B12-5": "Inject 0.5 mL intramuscularly once weekly",
    "FZ-NAD-200": "Inject 0.5 mL (100 mg) subcutaneously three times weekly",
}
HISTORY_CLINICAL_DIFFERENCE = ("Patient needs a titration dose below the smallest increment of the commercial "
                               "pen; documented intolerance to the commercial excipients.")
_ROTATION = [("FZ-SEMA-25", 1, 28), ("FZ-LDN-45", 30, 30), ("FZ-PROG-100", 30, 30), ("FZ-SILD-20", 30, 30),
             ("FZ-BIEST-80", 1, 30), ("FZ-B12-5", 1, 28)]


def history_for(clinic_login: str, patients: list) -> list[tuple]:
    """What a clinic ordered before: for Austin, 20 patients whose supply ends 0–6 days from today
    (one ran out yesterday) and a few ordered last week; for the others, a mix."""
    rows = []
    for i, patient in enumerate(patients):
        sku, quantity, days = ("FZ-NAD-200", 1, 30) if clinic_login == "denver" else _ROTATION[i % len(_ROTATION)]
        if clinic_login == "austin":
            days_ago = days - [2, 5, -1, 0, 6, 3, 1, 4][i % 8] if i < 20 else 3 + i % 5
        else:
            days_ago = days - [3, 12, 5, 25][i % 4]
        rows.append((patient.chart_id, sku, quantity, days, days_ago, HISTORY_PRESCRIBER_BY_STATE[patient.state]))
    return rows


# A patient's first fill was prescribed by a prescriber whose license has since lapsed: the refill
# is flagged (prescriber_license_expired) until another prescriber is chosen.
HISTORY_LAPSED_PRESCRIBER = {"BW-1001": "Okafor"}


# Prescriptions of record behind the past orders (seed_demo): every one is an e-prescription with
# refills left, except these, which the demo needs: Denver's first patient has none left (the
# "needs a new prescription" list, and refills_exhausted in Denver's cart); the second's expires
# soon; one of Austin's patients (not due this week) got the last fill of theirs.
PRESCRIPTION_SPECIALS = {
    ("BW-1003", "FZ-NAD-200"): {"refills": 0},
    ("BW-1005", "FZ-NAD-200"): {"expires_in": 10},
    ("BW-1025", "FZ-BIEST-80"): {"refills": 0},  # Austin: ordered last week, the last fill of its prescription
}
# Denver's open cart shows every prescription flag once: (chart id, sku, quantity, prescription)
# where the prescription is "history" (the one behind the past order), None (none on file), or a
# prescription on file to record (written days ago, refills, expires in days).
DENVER_FLAG_LINES = [
    ("BW-1003", "FZ-NAD-200", 1, "history"),  # refills_exhausted
    ("BW-1012", "FZ-NAD-200", 1, "history"),  # refill_too_soon: delivered yesterday
    ("BW-1009", "FZ-NAD-200", 2, "history"),  # prescription_mismatch: 1 vial prescribed
    ("BW-1005", "FZ-GLUT-200", 1, None),  # prescription_missing
    ("BW-1003", "FZ-B12-5", 1, {"written_days_ago": 400, "refills": 3, "expires_in": -35}),  # prescription_expired
    ("BW-1009", "FZ-TESC-200", 1, {"written_days_ago": 20, "refills": 8, "expires_in": 160}),  # controlled_refill_limit
]
# Standing prescriptions of Dr Patel for Bloom's Texas and Colorado patients: (sku, quantity per fill, days supply).
STANDING_PRESCRIPTIONS = [("FZ-LDN-45", 30, 30), ("FZ-B12-5", 1, 28)]
FLAG_SIG = {
    "FZ-GLUT-200": "Inject 1 mL (200 mg) intramuscularly twice weekly",
    "FZ-B12-5": "Inject 0.5 mL intramuscularly once weekly",
    "FZ-TESC-200": "Inject 0.5 mL (100 mg) intramuscularly once weekly",
}


def demo_prescription_pdf(*, patient, product, prescriber, written_on) -> bytes:
    """A small one-page PDF standing for a signed prescription (demo data only)."""
    lines = [f"Prescription - {prescriber} (NPI {prescriber.npi})", f"Patient: {patient.full_name}, DOB "
             f"{patient.date_of_birth:%m/%d/%Y}", f"Rx: {product}", "Sig: " + HISTORY_SIG.get(product.sku, ""),
             f"Written: {written_on:%m/%d/%Y}   Refills: 5", f"Signed: /s/ {prescriber.first_name} {prescriber.last_name}"]
    text = "BT /F1 11 Tf 72 720 Td 16 TL " + " ".join(
        "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text.encode("latin-1", "replace")) + text.encode("latin-1", "replace")
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
