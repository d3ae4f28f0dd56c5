from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        from orchestration import checks  # noqa: F401  (registers the system checks)
        from orchestration.workflows import (  # noqa: F401  (they register the workflows)
            amendment,
            quote_to_cash,
        )
