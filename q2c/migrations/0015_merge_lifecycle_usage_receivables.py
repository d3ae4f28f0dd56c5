from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Joins the lifecycle, usage and receivables migrations, then grants the roles the
    permissions of every model they created (refunds, change requests, usage reports)."""

    dependencies = [
        ("q2c", "0012_receivables_mirroring"),
        ("q2c", "0012_usage_rating_and_period_reports"),
        ("q2c", "0014_contract_change_roles"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
