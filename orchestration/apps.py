from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        from masterdata.services.merges import merge_observer_register
        from masterdata.services.records import account_observer_register
        from orchestration import checks  # noqa: F401  (registers the system checks)
        from orchestration.merge_push import CRM_MERGE_PUSH
        from orchestration.workflows import (  # noqa: F401  (they register the workflows)
            amendment,
            lifecycle,
            quote_to_cash,
            receivables,
        )
        from orchestration.workflows.customer_update import DOWNSTREAM_CUSTOMERS

        merge_observer_register(CRM_MERGE_PUSH)
        merge_observer_register(DOWNSTREAM_CUSTOMERS)
        account_observer_register(DOWNSTREAM_CUSTOMERS)
