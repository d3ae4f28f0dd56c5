from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core.audit import system_users_forget

        # A flush (a test database emptied between tests) sends post_migrate: the cached
        # system users' rows are gone with it.
        post_migrate.connect(system_users_forget, dispatch_uid="core.system_users_forget")
