from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0001_initial"),
        ("q2c", "0002_roles"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
