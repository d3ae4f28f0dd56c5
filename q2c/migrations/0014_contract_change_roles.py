from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Grant contract changes to the roles (core.roles): sales and finance ops renew, change
    quantities and ask for credits; finance ops approve credits (never their own)."""

    dependencies = [
        ("q2c", "0013_contract_change_requests"),
    ]

    operations = [
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
