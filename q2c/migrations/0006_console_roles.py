from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Integration support reads the orchestration records the timeline and dashboard show."""

    dependencies = [
        ("q2c", "0005_order_activated_at_index"),
        ("orchestration", "0002_roles"),
        ("exceptions", "0003_roles"),
    ]

    operations = [
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
