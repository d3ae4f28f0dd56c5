"""Indexes the console's lists need at a million orders (measured with bench/console.py).

- (state, created_at desc) on orders, contracts and invoices: a list filtered by state and
  sorted newest first reads its 50 rows (and its bounded count) in index order.
- Trigram indexes (PostgreSQL only, pg_trgm) on the expressions the searches use: Django's
  ``icontains`` is ``UPPER(col::text) LIKE UPPER('%q%')``, which no B-tree can serve; a GIN
  trigram index on ``UPPER(col)`` does. On SQLite (the demo) they are skipped.
"""

from django.db import migrations, models

TRIGRAM_INDEXES = [
    ("q2c_order_eid_trgm", "q2c_order", "enterprise_id"),
    ("account_legal_name_trgm", "masterdata_account", "legal_name"),
    ("account_eid_trgm", "masterdata_account", "enterprise_id"),
]


def trigram_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, column in TRIGRAM_INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" '
            f'USING gin (UPPER("{column}") gin_trgm_ops)'
        )


def trigram_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _table, _column in TRIGRAM_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):

    dependencies = [
        ('masterdata', '0002_account_domain_key_account_name_key_and_more'),
        ('q2c', '0003_historicalquote_customer_snapshot_and_more'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='contract',
            index=models.Index(fields=['state', '-created_at', '-id'], name='contract_state_created_idx'),
        ),
        migrations.AddIndex(
            model_name='invoice',
            index=models.Index(fields=['state', '-created_at'], name='invoice_state_created_idx'),
        ),
        migrations.AddIndex(
            model_name='order',
            index=models.Index(fields=['state', '-created_at', '-id'], name='order_state_created_idx'),
        ),
        migrations.RunPython(trigram_create, trigram_drop, elidable=False),
    ]
