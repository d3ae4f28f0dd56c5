from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Joins the dead-letter and reconciliation migrations, then grants the roles the
    permissions of both."""

    dependencies = [
        ("orchestration", "0005_dead_letters"),
        ("orchestration", "0006_reconciliation_roles"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
