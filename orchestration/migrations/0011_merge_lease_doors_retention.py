from django.db import migrations


class Migration(migrations.Migration):
    """Joins the step lease migration with the retention and door ones (no operation: the
    lease adds a field, no model, so no permission to grant)."""

    dependencies = [
        ("orchestration", "0008_steprun_lease_chaos"),
        ("orchestration", "0010_merge_retention_doors"),
    ]

    operations: list[migrations.operations.base.Operation] = []
