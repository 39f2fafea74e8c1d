"""Every existing order line and cart line gets a prescription of record, derived from it.

Lines ordered before Fizy tracked prescriptions carried SIG, quantity, days supply and refills but
no prescription. For each patient and product this records one prescription "on file" (source
``on_file``) from the latest order line — written on the day of the first order, valid for its
schedule's period from then, with the refills the lines asked for (at least enough for the fills
already ordered) — and one used fill per order line that was not rejected, cancelled or failed
(delivered lines keep their delivery time). A cart line points to that prescription when it asks
for the same quantity and directions, else to one derived from the cart line itself.
"""

import datetime

from django.db import migrations

VALID_DAYS = {"": 365, "II": 183, "III": 183, "IV": 183, "V": 183}
NOT_FILLED = {"rejected", "cancelled", "failed"}


def forwards(apps, schema_editor):
    Prescription = apps.get_model("prescriptions", "Prescription")
    Fill = apps.get_model("prescriptions", "Fill")
    OrderLine = apps.get_model("fulfillment", "OrderLine")
    CartLine = apps.get_model("carts", "CartLine")

    def record(*, clinic_id, line, written_on, refills, used):
        schedule = line.product.dea_schedule or ""
        refills = max(refills, used - 1, 0)
        return Prescription.objects.create(
            clinic_id=clinic_id, patient_id=line.patient_id, prescriber_id=line.prescriber_id,
            product_id=line.product_id, sig=line.sig or "(not recorded)", quantity=line.quantity or 1,
            days_supply=line.days_supply or 30, refills_authorized=refills,
            fills_remaining=max(refills + 1 - used, 0), written_on=written_on,
            expires_on=written_on + datetime.timedelta(days=VALID_DAYS.get(schedule, 365)),
            status="active" if refills + 1 - used > 0 else "exhausted", source="on_file",
        )

    groups: dict[tuple[int, int], list] = {}
    for line in (OrderLine.objects.filter(prescription__isnull=True, prescriber__isnull=False)
                 .select_related("order", "product").order_by("order__placed_at", "pk")):
        groups.setdefault((line.patient_id, line.product_id), []).append(line)
    derived = {}
    for key, lines in groups.items():
        latest = lines[-1]
        filled = [line for line in lines if line.status not in NOT_FILLED]
        rx = record(clinic_id=lines[0].order.clinic_id, line=latest, written_on=lines[0].order.placed_at.date(),
                    refills=max(line.refills for line in lines), used=len(filled))
        derived[key] = rx
        OrderLine.objects.filter(pk__in=[line.pk for line in lines]).update(prescription=rx)
        Fill.objects.bulk_create([
            Fill(prescription=rx, status="used", order_line_id=line.pk, reserved_at=line.order.placed_at,
                 used_at=line.order.placed_at,
                 delivered_at=line.status_changed_at if line.status == "delivered" else None)
            for line in filled
        ])
    for line in (CartLine.objects.filter(prescription__isnull=True, prescriber__isnull=False)
                 .select_related("cart", "product")):
        rx = derived.get((line.patient_id, line.product_id))
        if rx is None or rx.quantity != line.quantity or rx.sig.strip() != line.sig.strip():
            rx = record(clinic_id=line.cart.clinic_id, line=line, written_on=line.created_at.date(),
                        refills=line.refills, used=0)
        CartLine.objects.filter(pk=line.pk).update(prescription=rx)


class Migration(migrations.Migration):
    dependencies = [
        ("carts", "0004_cartline_prescription"),
        ("fulfillment", "0014_orderline_prescription"),
        ("prescriptions", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
