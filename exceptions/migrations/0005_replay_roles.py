from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    """Grant assign, comment and the replay permissions to the roles (core.roles)."""

    dependencies = [
        ("exceptions", "0004_comments_and_replays"),
    ]

    operations = [
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
