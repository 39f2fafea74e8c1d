"""Re-encrypt every encrypted column with the first key of FIELD_ENCRYPTION_KEYS (step 3 of the
key rotation described in fizy/lib/encryption.py)."""

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from fizy.lib.encryption import encrypted_fields, rotate


class Command(BaseCommand):
    help = "Re-encrypt every value encrypted at rest with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        total = 0
        for model in apps.get_models():
            fields = encrypted_fields(model)
            if not fields:
                continue
            table = connection.ops.quote_name(model._meta.db_table)
            pk = connection.ops.quote_name(model._meta.pk.column)
            columns = [connection.ops.quote_name(model._meta.get_field(f).column) for f in fields]
            # Raw SQL: the tokens are rotated as they are, never decrypted into model instances.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SELECT {pk}, {', '.join(columns)} FROM {table} ORDER BY {pk}")
                for row in cursor.fetchall():
                    values = [rotate(v) if v else v for v in row[1:]]
                    sets = ", ".join(f"{c} = %s" for c in columns)
                    cursor.execute(f"UPDATE {table} SET {sets} WHERE {pk} = %s", [*values, row[0]])
                    total += 1
            self.stdout.write(f"{model._meta.label}: {', '.join(fields)} re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"{total} row(s) re-encrypted with the first key."))
