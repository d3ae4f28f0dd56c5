"""The console's roles and what each may do. Groups are created by a data migration.

A permission is ``app_label.codename``; ``app_label.view_*`` means every view permission of
that app. Admins are staff superusers, not a group. Keep this table the one place that says
who may do what: views and API actions check these permissions on the server.
"""

from __future__ import annotations

from typing import Any

OWN_APPS = ["q2c", "masterdata", "orchestration", "exceptions"]

_COMMERCIAL_VIEW = [
    "q2c.view_quote", "q2c.view_quoteline", "q2c.view_order", "q2c.view_orderline",
    "q2c.view_contract", "q2c.view_contractversion", "q2c.view_contractline",
]  # fmt: skip
_FINANCE_VIEW = [
    "q2c.view_invoice", "q2c.view_invoiceline", "q2c.view_creditnote", "q2c.view_payment",
    "q2c.view_usagerecord", "q2c.view_usagereport", "q2c.view_usagedelivery",
]  # fmt: skip
_MASTER_VIEW = [
    "masterdata.view_account", "masterdata.view_legalentity", "masterdata.view_product",
    "masterdata.view_externalid",
]  # fmt: skip

# What the deal timeline and the dashboard read from orchestration.
_ORCHESTRATION_VIEW = [
    "orchestration.view_outboundcall", "orchestration.view_inboundevent",
    "orchestration.view_workflowrun", "orchestration.view_steprun",
    "orchestration.view_circuitbreaker",
]  # fmt: skip

# Finance's reconciliation page: runs and drift items.
_RECONCILIATION_VIEW = ["orchestration.view_reconciliationrun", "orchestration.view_driftitem"]

_EXC_VIEW = "exceptions.view_operationalexception"
_EXC_RETRY = "exceptions.retry_exception"
_EXC_RESOLVE = "exceptions.resolve_exception"
# Working the queue: assign and comment; replays are requested by anyone who works it and
# approved only by finance operations (maker-checker; compensation touches financial records).
_EXC_WORK = [
    "exceptions.assign_exception",
    "exceptions.add_exceptioncomment",
    "exceptions.view_exceptioncomment",
    "exceptions.view_replay",
    "exceptions.request_replay",
]
_REPLAY_APPROVE = "exceptions.approve_replay"

ROLES: dict[str, list[str]] = {
    "sales_ops": [
        *_COMMERCIAL_VIEW,
        *_MASTER_VIEW,
        "q2c.hold_order",
        "q2c.cancel_order",
        "q2c.amend_contract",
        _EXC_VIEW,
        _EXC_RETRY,
        *_EXC_WORK,
    ],
    "finance_ops": [
        *_COMMERCIAL_VIEW,
        *_FINANCE_VIEW,
        *_MASTER_VIEW,
        _EXC_VIEW,
        _EXC_RETRY,
        _EXC_RESOLVE,
        *_EXC_WORK,
        _REPLAY_APPROVE,
        "q2c.void_invoice",
        "q2c.cancel_contract",
        *_RECONCILIATION_VIEW,
        "orchestration.run_reconciliation",
        "orchestration.resolve_drift",
        "q2c.amend_contract",
        "q2c.approve_contract_change",
    ],
    "data_steward": [
        *_MASTER_VIEW,
        _EXC_VIEW,
        _EXC_RETRY,
        _EXC_RESOLVE,
        *_EXC_WORK,
        "masterdata.view_accountalias",
        "masterdata.view_productmapping",
        "masterdata.view_duplicatecandidate",
        "masterdata.view_mergerecord",
        "masterdata.view_mergedreference",
        "masterdata.change_account",
        "masterdata.merge_account",
        "masterdata.add_externalid",
        "masterdata.change_externalid",
        "masterdata.change_product",
        "masterdata.add_productmapping",
        "masterdata.change_productmapping",
    ],
    "integration_support": [
        *_COMMERCIAL_VIEW,
        *_FINANCE_VIEW,
        *_MASTER_VIEW,
        *_ORCHESTRATION_VIEW,
        *_RECONCILIATION_VIEW,
        _EXC_VIEW,
        _EXC_RETRY,
        _EXC_RESOLVE,
        *_EXC_WORK,
        "q2c.report_usage",  # the bulk usage API, for the metering system's token
        "orchestration.view_deadletteraction",
        "orchestration.work_dead_letter",
    ],
    "auditor": [f"{app}.view_*" for app in OWN_APPS],
}
ROLE_NAMES = list(ROLES)


def role_of(user: Any) -> str:
    """The role a user acts in: 'admin', one of ROLES, or '' for none."""
    if getattr(user, "is_superuser", False):
        return "admin"
    names = {group.name for group in user.groups.all()} if user.is_authenticated else set()
    for name in ROLE_NAMES:
        if name in names:
            return name
    return ""


def roles_sync(apps: Any) -> None:
    """Create the role groups and set exactly their permissions (used by data migrations).

    Every app with models has a roles migration calling this, so a permission is granted as
    soon as the migration that creates its model has run.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # Historical app configs have no models module; create_permissions skips those.
        original = getattr(app_config, "models_module", None)
        app_config.models_module = original or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = original

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    migrated = {config.label for config in apps.get_app_configs() if list(config.get_models())}
    for role, perms in ROLES.items():
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            if app_label not in migrated:
                continue  # that app's own roles migration grants it once its models exist
            qs = permission_model.objects.filter(content_type__app_label=app_label)
            if codename.endswith("*"):
                found = list(qs.filter(codename__startswith=codename[:-1]))
            else:
                found = list(qs.filter(codename=codename))
                if not found and codename in _declared(apps, app_label):
                    raise LookupError(f"role {role}: permission {perm} does not exist")
            wanted.extend(found)
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(wanted)


def _declared(apps: Any, app_label: str) -> set[str]:
    """Permission codenames the app's models declare at this migration state; one a later
    migration adds is granted by that migration's roles sync."""
    codenames: set[str] = set()
    for model in apps.get_app_config(app_label).get_models():
        opts = model._meta
        codenames.update(f"{action}_{opts.model_name}" for action in opts.default_permissions)
        codenames.update(codename for codename, _ in opts.permissions)
    return codenames
