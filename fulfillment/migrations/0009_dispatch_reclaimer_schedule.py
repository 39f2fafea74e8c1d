"""The dispatch reclaimer runs every minute: partner orders left "sending" by a dead worker, or
"queued" by a lost task, are queued again (fulfillment.dispatch.partner_orders_reclaim)."""

from django.db import migrations

from fizy.lib.schedules import DJANGO_Q_DEPENDENCY, periodic_schedule


class Migration(migrations.Migration):
    dependencies = [("fulfillment", "0008_attention_reason_codes_poll"), DJANGO_Q_DEPENDENCY]

    operations = [
        periodic_schedule(name="fizy: dispatch reclaimer", func="fulfillment.tasks.reclaim_partner_orders", minutes=1),
    ]
