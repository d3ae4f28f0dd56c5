"""WorkerHeartbeat moves from q2c to tandem, keeping its table (q2c_workerheartbeat):
state only, the table was made by q2c's first migration and is left as it is."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("q2c", "0010_list_sort_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="WorkerHeartbeat",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("hostname", models.CharField(max_length=255, unique=True)),
                        ("seen_at", models.DateTimeField()),
                    ],
                    options={"db_table": "q2c_workerheartbeat"},
                ),
            ],
            database_operations=[],
        ),
    ]
