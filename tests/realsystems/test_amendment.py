"""An amendment reaches both systems once: the ERP gets a sale for the difference, billing's
subscription is updated after the ERP accepted it, and the contract gets a new version.

Proved against the sandbox (with every ERP and billing answer lost after the system
committed) and against Tryton + localstripe; in both, the same amendment arrives twice under
one event id and once more under another."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.utils import timezone

from orchestration.connectors.stripe.billing import plan_id_for
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.events.signatures import SIGNATURE_HEADER, signature_header
from orchestration.models import InboundEvent, OutboundCall
from orchestration.tasks import poll_systems
from orchestration.workflows.models import RunState, StepRun, WorkflowRun
from q2c.models import Contract, Order, OrderState
from sandbox.config import default_webhook_secret
from tests.integration.q2c_env import (
    Rig,
    catalog_seed,
    rig_faults,
    rig_records,
    rig_start,
    system_environment,
    wait_until,
)
from tests.realsystems.conftest import LossyRig
from tests.realsystems.localstripe_server import LocalStripe
from tests.realsystems.lossy_proxy import rpc_method_is, stripe_update_of_a_subscription
from tests.sandbox.helpers import SandboxClient

pytestmark = pytest.mark.integration

# Every ERP and billing call times out after 1 s; the sandbox holds lost answers for 2.5 s.
LOST_ANSWERS_ENV = {
    "CONNECTOR_ERP_READ_TIMEOUT": "1",
    "CONNECTOR_BILLING_READ_TIMEOUT": "1",
    "CIRCUIT_OPEN_SECONDS": "1",
}


@pytest.fixture
def lossy_rig(
    live_server: Any, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    """The sandbox rig whose worker gives up on an answer after 1 s."""
    server = rig_start(live_server_url=live_server.url)
    env = system_environment(server.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    catalog_seed()
    start_worker(extra_env={**env, **LOST_ANSWERS_ENV}, concurrency=4)
    client = SandboxClient(server)
    yield Rig(sandbox=client, env=env)
    client.http.close()
    server.stop()


def _amendment(contract: Contract, *, event_id: str, amendment_id: str, seats: int) -> bytes:
    """CPQ's amendment.processed: the contract's seats line at ``seats``, from tomorrow."""
    [line] = contract.versions.get(state="active").lines.all()
    envelope = {
        "event_id": event_id,
        "event_type": "amendment.processed",
        "schema_version": 1,
        "occurred_at": timezone.now().isoformat(),
        "correlation_id": contract.enterprise_id,
        "data": {
            "contract_id": contract.enterprise_id,
            "amendment_id": amendment_id,
            "effective_date": str(max(contract.start_date, dt.date.today())),
            "lines": [
                {
                    "line_no": 1, "product_code": line.product_code,
                    "description": line.description, "kind": "recurring",
                    "quantity": str(seats), "unit_price": str(line.unit_price),
                    "discount_percent": str(line.discount_percent),
                    "billing_period": line.billing_period,
                    "term_start": str(line.term_start), "term_end": str(line.term_end),
                }
            ],
        },
    }  # fmt: skip
    return json.dumps(envelope, separators=(",", ":")).encode()


def _deliver(live_server_url: str, body: bytes) -> int:
    response = requests.post(
        f"{live_server_url}/webhooks/cpq/",
        data=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret=default_webhook_secret("cpq"), body=body),
        },
        timeout=30,
    )
    return response.status_code


def _deliver_three_times(live_server_url: str, contract: Contract) -> None:
    """Twice under one event id, once more under another: one amendment."""
    first = _amendment(contract, event_id="evt-amend-1", amendment_id="AMD-1", seats=35)
    again = _amendment(contract, event_id="evt-amend-1-resent", amendment_id="AMD-1", seats=35)
    assert [_deliver(live_server_url, body) for body in (first, first)] == [202, 200]
    wait_until(lambda: Order.objects.filter(amends=contract).first(), what="the amendment order")
    assert _deliver(live_server_url, again) == 202


def _active(quote_id: str) -> Order:
    return wait_until(
        lambda: (
            Order.objects.filter(quote__cpq_quote_id=quote_id, state=OrderState.ACTIVE)
            .select_related("account")
            .first()
        ),
        what="the order to become active",
        timeout=120,
    )


def _assert_amended_once_in_tandem(contract: Contract, amendment: Order) -> None:
    assert list(Order.objects.filter(amends=contract)) == [amendment]
    assert amendment.effective_date == max(contract.start_date, dt.date.today())
    versions = contract.versions.order_by("number")
    assert [(v.number, v.kind, v.state, v.order_id) for v in versions] == [
        (1, "initial", "superseded", contract.order_id),
        (2, "amendment", "active", amendment.pk),
    ]
    assert [(line.product_code, line.quantity) for line in versions[1].lines.all()] == [
        ("PLAT-PRO", Decimal("35.0000"))
    ]
    run = WorkflowRun.objects.get(kind="amendment")
    assert (run.subject_id, run.state) == (amendment.enterprise_id, RunState.COMPLETED)
    resent = wait_until(
        lambda: InboundEvent.objects.filter(
            event_id="evt-amend-1-resent", status="duplicate_absorbed"
        ).first(),
        what="the resent amendment to be absorbed",
    )
    assert resent.rejection_reason == (
        f"amendment AMD-1 was already received as {amendment.quote.enterprise_id}"
    )
    assert InboundEvent.objects.get(event_id="evt-amend-1").duplicate_deliveries == 1


def test_an_amendment_reaches_the_sandbox_erp_and_billing_once_despite_lost_answers(
    lossy_rig: Rig, live_server: Any
):
    # given: a live contract, then every ERP and billing answer is lost after the commit
    order = _active(lossy_rig.approve_quote()["Id"])
    contract = order.contracts.get()
    rig_faults(lossy_rig, "erp", lose_response_after_commit_rate=1.0, lose_response_hold_ms=2500)
    rig_faults(
        lossy_rig, "billing", lose_response_after_commit_rate=1.0, lose_response_hold_ms=2500
    )
    # when
    _deliver_three_times(live_server.url, contract)
    amendment = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.ACTIVE).first(),
        what="the amendment to be in effect",
        timeout=120,
    )
    # then: the sandbox ERP has one sale for the ten seats added
    sales = [
        row for row in rig_records(lossy_rig, "erp", "salesorders")
        if row["externalId"] == amendment.enterprise_id
    ]  # fmt: skip
    assert len(sales) == 1
    assert [(line["item"]["externalId"], line["quantity"], line["rate"]) for line in
            sales[0]["item"]["items"]] == [("ITEM-PLAT-PRO", "10", "36.00")]  # fmt: skip
    # billing: the one subscription now bills 35 seats, marked with the amendment
    [subscription] = rig_records(lossy_rig, "billing", "subscriptions")
    assert subscription["metadata"]["tandem_amendment"] == amendment.enterprise_id
    assert [(item["price"]["unit_amount"], item["quantity"]) for item in
            subscription["items"]["data"]] == [(3600, 35)]  # fmt: skip
    # the answers were lost and the steps found what the systems had committed
    steps = StepRun.objects.filter(run__kind="amendment")
    assert steps.get(name="create_erp_order").result["found"] is True
    assert steps.get(name="update_subscription").result["found"] is True
    assert list(
        OutboundCall.objects.filter(operation="subscription_update").values_list(
            "error_class", flat=True
        )
    ) == ["timeout"]
    _assert_amended_once_in_tandem(contract, amendment)


def _live_in_tryton_and_stripe(rig: Rig, localstripe: LocalStripe, erp: TrytonErp) -> Order:
    quote = rig.approve_quote()
    order = wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=quote["Id"], state=OrderState.SUBMITTED_TO_ERP
        ).first(),
        what="the sale to be submitted to Tryton",
    )
    [customer] = localstripe.get("/v1/customers", limit=100)["data"]
    localstripe.card_on_file(str(customer["id"]))
    sale = erp.sales_order_find(reference=order.enterprise_id)
    assert sale is not None
    erp.sales_order_confirm(sales_order_id=sale.id)
    poll_systems.delay()
    return _active(quote["Id"])


def _tryton_sales(erp: TrytonErp, reference: str) -> list[dict[str, Any]]:
    return erp.search_read(
        "sale.sale", [["reference", "=", reference]],
        ["id", "state", "untaxed_amount", "lines"], operation="test_read",
    )  # fmt: skip


def test_an_amendment_reaches_tryton_and_stripe_once_despite_lost_answers_and_waits_for_tryton(
    lossy_tryton_stripe_rig: LossyRig, localstripe: LocalStripe, live_server: Any
):
    # given: a contract live in Tryton and Stripe; from now on the answer to the next sale
    # created in Tryton and to the next subscription update in Stripe is lost
    erp = TrytonErp()
    order = _live_in_tryton_and_stripe(lossy_tryton_stripe_rig.rig, localstripe, erp)
    contract = order.contracts.get()
    lossy_tryton_stripe_rig.erp_proxy.lose_answers(rpc_method_is("model.sale.sale.create"))
    lossy_tryton_stripe_rig.billing_proxy.lose_answers(stripe_update_of_a_subscription)
    # when: the amendment arrives three times; its sale waits in Tryton for finance
    _deliver_three_times(live_server.url, contract)
    amendment = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.SUBMITTED_TO_ERP).first(),
        what="the amendment's sale in Tryton",
    )
    [sale] = _tryton_sales(erp, amendment.enterprise_id)
    assert sale["state"] == "quotation"  # the lost create's draft, quoted when found
    [before] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    assert [item["quantity"] for item in before["items"]["data"]] == [25]  # not yet billed
    erp.sales_order_confirm(sales_order_id=str(sale["id"]))
    poll_systems.delay()
    amendment = wait_until(
        lambda: Order.objects.filter(amends=contract, state=OrderState.ACTIVE).first(),
        what="the amendment to be in effect",
        timeout=120,
    )
    # then: both answers were lost, after Tryton and localstripe had done the work
    [lost_update] = lossy_tryton_stripe_rig.billing_proxy.dropped
    assert lossy_tryton_stripe_rig.erp_proxy.dropped == ["POST /tandem/rpc/"]
    assert lost_update == f"POST /v1/subscriptions/{before['id']}"
    # Tryton has one sale for the ten seats added
    [sale] = _tryton_sales(erp, amendment.enterprise_id)
    assert (sale["state"], sale["untaxed_amount"]) == ("processing", Decimal("360.00"))
    lines = erp.rpc("test_read", "model.sale.line.read",
                    [sale["lines"], ["quantity", "unit_price"]])  # fmt: skip
    assert [(line["quantity"], line["unit_price"]) for line in lines] == [(10.0, Decimal("36.00"))]
    # Stripe: the same subscription bills 35 seats on the same plan (localstripe drops the
    # metadata of an update, so the amendment's mark is not there to check)
    [subscription] = localstripe.get("/v1/subscriptions", status="all", limit=100)["data"]
    assert (subscription["id"], subscription["status"]) == (before["id"], "active")
    assert [(item["plan"]["id"], item["quantity"]) for item in subscription["items"]["data"]] == [
        (plan_id_for("prod_platpro:GBP:36.00:month"), 35)
    ]
    # one update sent (its answer lost); the retry found it done and sent nothing
    updates = OutboundCall.objects.filter(operation="subscription_update")
    assert list(updates.values_list("error_class", flat=True)) == ["connection_error"]
    creates = OutboundCall.objects.filter(
        operation="sales_order_create", correlation_id=amendment.enterprise_id
    )
    assert list(creates.values_list("error_class", flat=True)) == ["connection_error"]
    steps = StepRun.objects.filter(run__kind="amendment")
    assert steps.get(name="create_erp_order").result["found"] is True
    assert steps.get(name="update_subscription").result["found"] is True
    _assert_amended_once_in_tandem(contract, amendment)
