from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0005_reconciliation")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
