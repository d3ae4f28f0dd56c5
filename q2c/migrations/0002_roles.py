from django.db import migrations


def sync(apps, schema_editor):
    from core.roles import roles_sync

    roles_sync(apps)


def seed_counters(apps, schema_editor):
    from core.identifiers import PREFIXES

    counter = apps.get_model("q2c", "IdentifierCounter")
    for prefix in PREFIXES.values():
        counter.objects.get_or_create(prefix=prefix)


class Migration(migrations.Migration):
    dependencies = [
        ("q2c", "0001_initial"),
        ("masterdata", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(seed_counters, migrations.RunPython.noop),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
