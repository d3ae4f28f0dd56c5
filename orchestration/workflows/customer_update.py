"""Keeping the ERP's and billing's customers up to date with Tandem's account.

A change of a live account's address or tax id (``masterdata`` tells its
``AccountObserver``s) and a merge (the survivor, through the ``MergeObserver``) start one run
per change: its subject is the account, its version the account's history row of the change,
so the same change never starts twice and a later one gets a run of its own. Each step sends
the account's name, email, tax id and address to every customer the crosswalk links to it in
that system (after a merge, the loser's customers too). An update sets values, so sending it
again after a lost answer changes nothing; a system whose connector cannot update customers is
skipped and says so in the step's result.
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType

from core.audit import Actor
from masterdata.models import Account, ExternalId, MergeRecord
from masterdata.selectors import account_by_enterprise_id
from orchestration.connectors.registry import connector_for
from orchestration.workflows.engine import Done, StepContext, StepDef, WorkflowDef, workflow_start
from orchestration.workflows.engine import workflow_register as _register
from orchestration.workflows.errors import StepFailed
from orchestration.workflows.steps import connector_errors, party_of

KIND = "customer_update"


def _account(ctx: StepContext) -> Account:
    account = account_by_enterprise_id(enterprise_id=ctx.run.subject_id)
    if account is None:
        raise StepFailed(f"no account {ctx.run.subject_id}", category="master_data",
                         error_class="AccountMissing")  # fmt: skip
    return account


def _push(ctx: StepContext, system: str) -> Done:
    account = _account(ctx)
    customers = list(
        ExternalId.objects.filter(
            content_type=ContentType.objects.get_for_model(Account),
            object_id=account.pk,
            system=system,
            object_type="customer",
        )
        .order_by("pk")
        .values_list("external_id", flat=True)
    )
    if not customers:
        return Done(data={"skipped": f"{account.enterprise_id} has no {system} customer yet"})
    connector: Any = connector_for(system)
    if not callable(getattr(connector, "customer_update", None)):
        return Done(data={"skipped": f"the {system} connector cannot update customers"})
    party = party_of(account)
    with connector_errors(category="master_data"):
        for customer_id in customers:
            connector.customer_update(
                customer_id=customer_id, party=party, idempotency_key=f"{ctx.key}:{customer_id}"
            )
    return Done(",".join(customers), {"customers": customers})


def update_erp_customer(ctx: StepContext) -> Done:
    return _push(ctx, "erp")


def update_billing_customer(ctx: StepContext) -> Done:
    return _push(ctx, "billing")


CUSTOMER_UPDATE = _register(
    WorkflowDef(
        kind=KIND,
        steps=[
            StepDef("update_erp_customer", update_erp_customer, system="erp"),
            StepDef("update_billing_customer", update_billing_customer, system="billing"),
        ],
    )
)


def customer_update_start(*, account: Account, actor: Actor) -> None:
    """Start the run that pushes ``account``'s current details downstream, once per change
    (its latest history row); inside the caller's transaction, the first step sent after
    commit. Refuses nothing."""
    latest = account.history.order_by("-history_id").values_list("history_id", flat=True).first()
    workflow_start(
        kind=KIND, subject_id=account.enterprise_id, subject_version=latest or 1, actor=actor
    )


class DownstreamCustomers:
    """Registered as master data's ``AccountObserver`` and ``MergeObserver``."""

    def account_changed(self, *, account: Account, fields: list[str]) -> None:
        customer_update_start(account=account, actor=Actor.system("worker"))

    def merge_starting(self, **_: Any) -> None:
        pass

    def merge_moving(self, **_: Any) -> None:
        pass

    def merge_executed(self, *, merge: MergeRecord) -> None:
        customer_update_start(account=merge.survivor, actor=Actor.system("worker"))

    def merge_undone(self, **_: Any) -> None:
        pass

    def push_requested(self, **_: Any) -> None:
        pass


DOWNSTREAM_CUSTOMERS = DownstreamCustomers()
