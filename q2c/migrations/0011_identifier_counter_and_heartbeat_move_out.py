"""IdentifierCounter moved to core and WorkerHeartbeat to tandem: q2c forgets them (state
only; their tables stay, now owned by those apps' first migrations)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("q2c", "0010_list_sort_indexes"),
        ("core", "0001_initial"),
        ("tandem", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="IdentifierCounter"),
                migrations.DeleteModel(name="WorkerHeartbeat"),
            ],
            database_operations=[],
        ),
    ]
