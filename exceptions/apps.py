from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Exceptions"

    def ready(self) -> None:
        from core.problems import problem_sink_register
        from exceptions.observers import MASTER_DATA, QUEUE
        from masterdata.services.merges import merge_observer_register
        from orchestration.workflows.observers import observer_register

        observer_register(QUEUE)
        problem_sink_register(QUEUE)
        merge_observer_register(MASTER_DATA)
