"""Quote to cash end to end over real HTTP: the sandbox CPQ approves a quote, its signed
webhook reaches Tandem's endpoint, a real worker runs the workflow against the sandbox ERP
and billing, the ERP's acceptance comes back as a webhook, and the order goes live."""

from __future__ import annotations

from typing import Any

import pytest

from masterdata.models import ExternalId
from orchestration.models import InboundEvent
from q2c.models import ContractState, Order, OrderState
from tests.integration.q2c_env import Rig, wait_run_completed, wait_until

pytestmark = pytest.mark.integration


def _state_count(rig: Rig, system: str, collection: str, **match: str) -> list[dict[str, Any]]:
    rows = rig.sandbox.state(system)["records"][collection]
    return [row for row in rows if all(_dig(row, key) == value for key, value in match.items())]


def _dig(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def test_an_approved_quote_becomes_a_live_order_in_every_system_exactly_once(rig: Rig):
    # given
    quote = rig.approve_quote()
    # when
    order = wait_until(
        lambda: (
            Order.objects.filter(quote__cpq_quote_id=quote["Id"], state=OrderState.ACTIVE)
            .select_related("account")
            .first()
        ),
        what="the order to become active",
    )
    # then: the last step's success is recorded just after the order became active
    run = wait_run_completed(order.enterprise_id)
    assert set(run.steps.values_list("state", flat=True)) == {"succeeded"}
    assert order.account.legal_name == "Northwind Traders Ltd"
    contract = order.contracts.get()
    assert contract.state == ContractState.ACTIVE
    assert contract.versions.get().lines.count() == 1
    assert len(_state_count(rig, "erp", "salesorders", externalId=order.enterprise_id)) == 1
    subs = _state_count(
        rig, "billing", "subscriptions", **{"metadata.tandem_order": order.enterprise_id}
    )
    assert len(subs) == 1
    assert len(_state_count(rig, "erp", "invoices", externalId=f"{order.enterprise_id}-OT")) == 1
    links = set(
        ExternalId.objects.filter(
            enterprise_id__in=[order.enterprise_id, contract.enterprise_id]
        ).values_list("system", "object_type")
    )
    assert links == {("erp", "sales_order"), ("billing", "subscription")}
    assert InboundEvent.objects.filter(system="cpq", status="processed").count() == 1
    actors = set(order.history.values_list("history_user__username", flat=True))
    assert actors == {"connector:cpq", "worker"}
