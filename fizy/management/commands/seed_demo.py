"""Seed the demo world. Idempotent: a second run finds every row by its natural key."""

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from catalog.models import Offering, Partner, PartnerStateLicense, Product
from clinics.models import Clinic, DEARegistration, Membership, Organization, Patient, Prescriber, PrescriberLicense
from fizy import demo_data as data
from fizy.demo_data import demo_prescription_pdf
from fizy.lib.identifiers import dea_from_base, npi_from_base
from fizy.lib.payments import SANDBOX_CARDS
from carts.models import Cart, CartLine
from fulfillment.models import Order, OrderLine, PartnerOrder, PaymentEvent
from prescriptions.models import Fill, Prescription
from prescriptions.rules import default_expiry
from notices.models import NoticeSettings
from routing.engine import route_preview
from routing.models import RoutingRule


class Command(BaseCommand):
    help = "Create (or bring up to date) the demo organizations, clinics, catalog, patients and logins."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        orgs = {name: Organization.objects.get_or_create(name=name)[0] for name in data.ORGANIZATIONS}
        logins = []

        clinics = {}
        for org_name, clinic_specs in data.ORGANIZATIONS.items():
            for spec in clinic_specs:
                line1, line2, city, state, zip_code = spec["address"]
                contact, email, phone = spec["billing"]
                clinic, _ = Clinic.objects.update_or_create(
                    organization=orgs[org_name], name=spec["name"],
                    defaults=dict(
                        npi=npi_from_base(spec["npi9"]),
                        dea_number=dea_from_base(*spec["dea"]) if spec["dea"] else "",
                        address_line1=line1, address_line2=line2, city=city, state=state, zip_code=zip_code,
                        billing_contact_name=contact, billing_email=email, billing_phone=phone, timezone=spec["tz"],
                        **self._sandbox_card(spec),
                    ),
                )
                clinics[spec["name"]] = clinic
                user = self._user(User, spec["login"], first_name="Coordinator", last_name=city)
                Membership.objects.get_or_create(user=user, clinic=clinic, defaults={"role": Membership.Role.COORDINATOR})
                logins.append((spec["login"], f"coordinator, {clinic.name}"))

        username, _, clinic_names = data.MULTI_CLINIC_LOGIN
        admin_user = self._user(User, username, first_name="Dana", last_name="Whitfield")
        for name in clinic_names:
            Membership.objects.update_or_create(
                user=admin_user, clinic=clinics[name], defaults={"role": Membership.Role.CLINIC_ADMIN}
            )
        logins.append((username, "clinic admin of " + " and ".join(clinic_names)))
        for username, first, last, clinic_names in data.CLINIC_ADMIN_LOGINS:
            user = self._user(User, username, first_name=first, last_name=last)
            for name in clinic_names:
                Membership.objects.update_or_create(user=user, clinic=clinics[name],
                                                    defaults={"role": Membership.Role.CLINIC_ADMIN})
            logins.append((username, "clinic admin of " + " and ".join(clinic_names)))

        for username, first, last, group_name in data.STAFF_LOGINS:
            staff = self._user(User, username, first_name=first, last_name=last, is_staff=True)
            staff.groups.set([Group.objects.get(name=group_name)])
            logins.append((username, f"Fizy staff, {group_name.lower()} role (admin at /admin/)"))

        self._catalog()
        self._prescribers(orgs)
        self._routing_rules(orgs)
        for org_name, org in orgs.items():
            for record in data.patients_for(org_name):
                chart_id = record.pop("chart_id")
                Patient.objects.update_or_create(organization=org, chart_id=chart_id, defaults=record)
        self._history(clinics)
        self._prescriptions(clinics)
        # Austin's quiet hours are off in the demo, so that patients' texts show at any hour of the
        # day; Denver and Miami keep the default 21:00–08:00.
        NoticeSettings.objects.update_or_create(
            clinic=clinics["Bloom Wellness — Austin"],
            defaults={"quiet_hours_start": datetime.time(0, 0), "quiet_hours_end": datetime.time(0, 0)},
        )

        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready: {Organization.objects.count()} organizations, {Clinic.objects.count()} clinics, "
            f"{Partner.objects.count()} partners, {Product.objects.count()} products, "
            f"{Prescriber.objects.count()} prescribers, {Patient.objects.count()} patients."
        ))
        self.stdout.write(f"Logins (password for all: {data.PASSWORD}):")
        for username, role in logins:
            self.stdout.write(f"  {username:<14} {role}")
        self.stdout.write("Staff and clinic admins set up two-factor at their first login: scan the QR code with an "
                          "authenticator app. No app at hand? `python manage.py totp_code <login>` prints the code "
                          "(demo only).")
        if settings.FIZY_ALLOW_SANDBOX:
            token = self._demo_api_key(clinics)
            self.stdout.write(f"Clinic API key of {data.DEMO_API_KEY[0]} (every scope; docs/clinic-api.md):\n  {token}")

    def _demo_api_key(self, clinics) -> str:
        from clinic_api.keys import hash_token
        from clinic_api.models import ApiKey, Scope

        clinic_name, name, token = data.DEMO_API_KEY
        prefix = token.split("_")[1]
        ApiKey.objects.update_or_create(
            prefix=prefix, defaults={"clinic": clinics[clinic_name], "name": name, "hashed": hash_token(token),
                                     "scopes": list(Scope.values), "revoked_at": None})
        return token

    def _sandbox_card(self, spec) -> dict:
        """A saved sandbox card, as a clinic admin would have set up on the Billing page. The Miami
        clinic's card declines, to show what a coordinator sees then."""
        card = SANDBOX_CARDS[spec["card"]]
        return {"stripe_customer_id": f"cus_sandbox_demo_{spec['login']}", "payment_method_id": card.payment_method_id,
                "card_brand": card.brand, "card_last4": card.last4, "card_exp": card.exp}

    def _user(self, User, username, **fields):
        user, created = User.objects.update_or_create(
            username=username, defaults={**fields, "email": f"{username}@fizy.example"}
        )
        if created:
            user.set_password(data.PASSWORD)
            user.save(update_fields=["password"])
        return user

    def _catalog(self):
        products = {}
        for sku, name, strength, form, unit, schedule, max_qty, needs_cd in data.PRODUCTS:
            products[sku], _ = Product.objects.update_or_create(
                sku=sku,
                defaults=dict(name=name, strength=strength, dosage_form=form, unit=unit, dea_schedule=schedule,
                              max_quantity_per_line=max_qty, requires_clinical_difference=needs_cd),
            )
        for spec in data.PARTNERS:
            partner, _ = Partner.objects.update_or_create(
                slug=spec["slug"],
                defaults=dict(name=spec["name"], legitscript_id=spec["legitscript"], support_email=spec["email"],
                              api_base_url=f"{settings.SANDBOX_WEBHOOK_BASE_URL}/sandbox/partners/{spec['slug']}", api_key=spec["api_key"],
                              webhook_secret=spec["webhook_secret"], order_lookup=True),
            )
            for state in spec["states"]:
                PartnerStateLicense.objects.update_or_create(
                    partner=partner, state=state,
                    defaults={"license_number": f"{state}-PHY-{partner.pk:03d}{len(state)}", "expires_on": data.FAR},
                )
            for sku, (price, shipping, stock) in data.OFFERINGS[spec["slug"]].items():
                Offering.objects.update_or_create(
                    partner=partner, product=products[sku],
                    defaults=dict(partner_sku=f"{spec['slug'][:3].upper()}-{sku[3:]}", unit_price=price,
                                  shipping_fee=shipping, stock_quantity=stock),
                )

    def _history(self, clinics):
        """Delivered orders from the past weeks, so the refills-due queue is populated on refill day.
        Each is found again by its reference on a second run."""
        now = timezone.now()
        products = {p.sku: p for p in Product.objects.all()}
        offerings = {(o.product_id, o.partner_id): o for o in Offering.objects.select_related("partner")}
        by_login = {spec["login"]: clinics[spec["name"]] for specs in data.ORGANIZATIONS.values() for spec in specs}
        # Austin ordered for 23 Bloom patients (20 of them due this week); Denver ordered NAD+ for
        # Colorado patients; Miami for its own. Only patients whose records were complete then.
        complete = lambda p: p.date_of_birth and p.address_is_complete  # noqa: E731
        bloom = [p for p in Patient.objects.filter(organization__name="Bloom Wellness Group").order_by("chart_id")
                 if p.state != "OK" and p.address_is_complete]
        austin = bloom[:23]
        plans = {
            "austin": austin,
            "denver": [p for p in bloom if p.state == "CO" and complete(p)][:4],
            "miami": [p for p in Patient.objects.filter(organization__name="Vitalis Telehealth").order_by("chart_id")
                      if complete(p)][:8],
        }
        for login, patients in plans.items():
            clinic = by_login[login]
            for chart_id, sku, quantity, days, days_ago, prescriber_name in data.history_for(login, patients):
                patient = next(p for p in patients if p.chart_id == chart_id)
                product = products[sku]
                prescriber = Prescriber.objects.get(
                    organization=clinic.organization,
                    last_name=data.HISTORY_LAPSED_PRESCRIBER.get(chart_id, prescriber_name))
                decision = route_preview(product=product, state=patient.state, quantity=quantity, clinic=clinic)
                offering = decision.offering or next(o for (pid, _), o in offerings.items() if pid == product.pk)
                placed_at = now - datetime.timedelta(days=days_ago)
                landed = offering.unit_price * quantity + offering.shipping_fee
                order, _ = Order.objects.update_or_create(
                    payment_reference=f"demo-history-{login}-{chart_id}-{sku}",
                    defaults=dict(clinic=clinic, placed_at=placed_at, total=landed, payment_gateway="sandbox",
                                  payment_status=Order.PaymentStatus.CAPTURED, amount_authorized=landed,
                                  amount_captured=landed, settlement_requested_at=placed_at,
                                  ship_to=clinic.ship_to_snapshot()),
                )
                po, _ = PartnerOrder.objects.update_or_create(
                    order=order, partner=offering.partner,
                    defaults=dict(status=PartnerOrder.Status.SENT, partner_reference=f"{offering.partner.slug.upper()}-H{order.pk}",
                                  sent_at=placed_at, subtotal=landed, shipping_fee=offering.shipping_fee, attempts=1),
                )
                OrderLine.objects.update_or_create(
                    order=order, patient=patient, product=product,
                    defaults=dict(
                        partner_order=po, prescriber=prescriber, product_name=str(product),
                        patient_snapshot=patient.snapshot(),
                        prescriber_snapshot=prescriber.snapshot(state=patient.state),
                        partner_sku=offering.partner_sku, quantity=quantity, sig=data.HISTORY_SIG[sku],
                        days_supply=days,
                        clinical_difference=data.HISTORY_CLINICAL_DIFFERENCE if product.requires_clinical_difference else "",
                        unit_price=offering.unit_price, shipping_share=offering.shipping_fee, landed_cost=landed,
                        status=OrderLine.Status.DELIVERED, status_changed_at=placed_at + datetime.timedelta(days=4),
                        tracking_number=f"1Z{order.pk:06d}DEMO", carrier="UPS",
                        amount_charged=landed, charge_reference=order.payment_reference,
                    ),
                )
                # The capture, as settlement would have recorded it (check_money reads the events).
                PaymentEvent.objects.get_or_create(
                    order=order, kind=PaymentEvent.Kind.CAPTURED,
                    defaults=dict(clinic=clinic, amount=landed, gateway="sandbox", reference=order.payment_reference),
                )

    def _prescriptions(self, clinics):
        """The prescriptions of record: one e-prescription behind every past order line (with its
        fill, delivered), standing naltrexone and methylcobalamin prescriptions for every Bloom
        patient with a complete record in Texas or Colorado (a few as signed PDF documents), and Denver's cart with one line for each
        prescription flag (missing, expired, no refills left, too soon, mismatch, controlled limit).
        Austin's refill day is untouched: its 20 due patients have refills left."""
        today = timezone.localdate()
        denver = clinics["Bloom Wellness — Denver"]
        specials = data.PRESCRIPTION_SPECIALS
        for line in (OrderLine.objects.filter(order__payment_reference__startswith="demo-history-")
                     .select_related("order", "patient", "product", "prescriber").order_by("pk")):
            chart_id, sku = line.patient.chart_id, line.product.sku
            special = specials.get((chart_id, sku), {})
            placed_on = timezone.localdate(line.order.placed_at)
            written_on = special.get("written_on", placed_on - datetime.timedelta(days=3))
            refills = special.get("refills", 5)
            expires_on = (today + datetime.timedelta(days=special["expires_in"])) if "expires_in" in special else default_expiry(
                written_on=written_on, schedule=line.product.dea_schedule, state=line.patient.state)
            rx, _ = Prescription.objects.update_or_create(
                patient=line.patient, product=line.product, rx_number=f"DEMO-{chart_id}-{sku}",
                defaults=dict(clinic=line.order.clinic, prescriber=line.prescriber, sig=special.get("sig", line.sig),
                              quantity=line.quantity, days_supply=line.days_supply or 30, refills_authorized=refills,
                              fills_remaining=refills, written_on=written_on, expires_on=expires_on,
                              status=Prescription.Status.ACTIVE if refills else Prescription.Status.EXHAUSTED,
                              source=Prescription.Source.ERX, erx_message_id=f"SS-{line.order.pk:08d}"),
            )
            OrderLine.objects.filter(pk=line.pk).update(prescription=rx)
            Fill.objects.update_or_create(order_line_id=line.pk, defaults=dict(
                prescription=rx, status=Fill.Status.USED, reserved_at=line.order.placed_at,
                used_at=line.order.placed_at, delivered_at=line.status_changed_at))
        austin = clinics["Bloom Wellness — Austin"]
        patel = Prescriber.objects.get(organization=austin.organization, last_name="Patel")
        standing = [p for p in Patient.objects.filter(organization=austin.organization).order_by("chart_id")
                    if p.date_of_birth and p.address_is_complete and p.state in ("TX", "CO")]
        for sku, quantity, days in data.STANDING_PRESCRIPTIONS:
            product = Product.objects.get(sku=sku)
            for i, patient in enumerate(standing):
                written_on = today - datetime.timedelta(days=40)
                rx, created = Prescription.objects.get_or_create(
                    patient=patient, product=product, rx_number=f"DEMO-{sku[3:]}-{patient.chart_id}",
                    defaults=dict(clinic=austin, prescriber=patel, sig=data.HISTORY_SIG[sku], quantity=quantity,
                                  days_supply=days, refills_authorized=5, fills_remaining=6, written_on=written_on,
                                  expires_on=default_expiry(written_on=written_on, schedule="", state=patient.state),
                                  source=Prescription.Source.ERX, erx_message_id=f"SS-{sku[3:]}-{patient.pk:06d}"),
                )
                if i % 5 == 0 and not rx.document:
                    rx.source, rx.document_content_type = Prescription.Source.DOCUMENT, "application/pdf"
                    rx.document.save(f"rx-{patient.chart_id}-{sku[3:].lower()}.pdf", ContentFile(demo_prescription_pdf(
                        patient=patient, product=product, prescriber=patel, written_on=written_on)), save=False)
                    rx.save()
        self._denver_cart(denver, today)

    def _denver_cart(self, denver, today):
        """Denver's open cart: one line for each prescription flag, so the demo shows them all."""
        cart = Cart.objects.filter(clinic=denver, status__in=["open", "checking_out"]).first() or Cart.objects.create(
            clinic=denver)
        products = {p.sku: p for p in Product.objects.all()}
        for chart_id, sku, quantity, rx_spec in data.DENVER_FLAG_LINES:
            patient = Patient.objects.get(organization=denver.organization, chart_id=chart_id)
            product = products[sku]
            rx = None
            if rx_spec == "history":
                rx = Prescription.objects.get(patient=patient, product=product, rx_number=f"DEMO-{chart_id}-{sku}")
            elif rx_spec:
                written_on = today - datetime.timedelta(days=rx_spec["written_days_ago"])
                rx, _ = Prescription.objects.update_or_create(
                    patient=patient, product=product, rx_number=f"DEMO-{chart_id}-{sku}",
                    defaults=dict(clinic=denver, prescriber=Prescriber.objects.get(
                        organization=denver.organization, last_name="Ortega"), sig=data.FLAG_SIG[sku],
                        quantity=quantity, days_supply=30, refills_authorized=rx_spec["refills"],
                        fills_remaining=rx_spec["refills"] + 1, written_on=written_on,
                        expires_on=today + datetime.timedelta(days=rx_spec["expires_in"]),
                        source=Prescription.Source.ON_FILE),
                )
            prescriber = rx.prescriber if rx else Prescriber.objects.get(organization=denver.organization,
                                                                         last_name="Patel")
            CartLine.objects.update_or_create(cart=cart, patient=patient, product=product, defaults=dict(
                prescriber=prescriber, prescription=rx, quantity=quantity if rx_spec != "history" else quantity,
                sig=rx.sig if rx else data.FLAG_SIG.get(sku, ""), days_supply=30))

    def _routing_rules(self, orgs):
        for name, priority, sku, states, org_name, slug in data.ROUTING_RULES:
            RoutingRule.objects.update_or_create(
                name=name,
                defaults=dict(priority=priority, product=Product.objects.get(sku=sku) if sku else None, states=states,
                              organization=orgs[org_name] if org_name else None, partner=Partner.objects.get(slug=slug)),
            )

    def _prescribers(self, orgs):
        for org_name, specs in data.PRESCRIBERS.items():
            for first, last, creds, npi9, dea, licenses, registrations in specs:
                prescriber, _ = Prescriber.objects.update_or_create(
                    organization=orgs[org_name], npi=npi_from_base(npi9),
                    defaults=dict(first_name=first, last_name=last, credentials=creds,
                                  dea_number=dea_from_base(*dea) if dea else ""),
                )
                for state, number, expires_on in licenses:
                    PrescriberLicense.objects.update_or_create(
                        prescriber=prescriber, state=state, number=number, defaults={"expires_on": expires_on}
                    )
                for state, dea_base, expires_on in registrations:
                    DEARegistration.objects.update_or_create(
                        prescriber=prescriber, state=state, number=dea_from_base(*dea_base),
                        defaults={"expires_on": expires_on},
                    )
