"""IdentifierCounter moves from q2c to core, keeping its table (q2c_identifiercounter):
state only, the table was made by q2c's first migration and is left as it is."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("q2c", "0010_list_sort_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdentifierCounter",
                    fields=[
                        ("prefix", models.CharField(max_length=8, primary_key=True, serialize=False)),
                        ("last_value", models.BigIntegerField(default=0)),
                    ],
                    options={
                        "db_table": "q2c_identifiercounter",
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("last_value__gte", 0)),
                                name="identifiercounter_non_negative",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
