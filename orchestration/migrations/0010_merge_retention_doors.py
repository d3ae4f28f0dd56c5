from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Joins the retention and the door (rejected deliveries give their event id up, client
    address) migrations, then grants the roles the permissions of both."""

    dependencies = [
        ("orchestration", "0008_retention_fuzz"),
        ("orchestration", "0009_inbound_client_address_doors"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
