"""Replays and compensation end to end: the sandbox, Tandem's live webhook endpoint and a real
Celery worker. Billing refuses the subscription after the ERP order exists; an approved
replay re-runs the failed step and skips every effect that exists, and an approved
compensation cancels the ERP sales order instead."""

from __future__ import annotations

from typing import Any

import pytest

from core.audit import Actor, audit_context
from exceptions import services
from exceptions.models import ExceptionState, OperationalException, Replay, ReplayKind
from masterdata.models import ProductMapping
from orchestration.workflows.models import RunState, StepEffect, WorkflowRun
from q2c.models import Order, OrderState
from tests.integration.q2c_env import Rig, rig_records, wait_until
from tests.sandbox.helpers import cpq_quote, crm_account

pytestmark = pytest.mark.integration

# The quote's recurring line (PLAT-PRO, 40.00 less 10%, monthly, GBP) is billed at this price.
PRICE_KEY = "prod_platpro:GBP:36.00:month"


def billing_refuses_the_subscription(rig: Rig) -> tuple[Order, OperationalException]:
    """A price already holds the order's lookup key at another amount: billing's price is a
    permanent conflict, found only after the ERP sales order was created and accepted."""
    response = rig.sandbox.post(
        "billing", "/prices",
        {"currency": "gbp", "unit_amount": 1, "lookup_key": PRICE_KEY,
         "recurring": {"interval": "month"}, "product_data": {"name": "An old price"}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    quote = rig.approve_quote()
    order = held(quote["Id"])
    exception = OperationalException.objects.get(order=order)
    assert (exception.step, exception.state) == ("create_subscription", ExceptionState.OPEN)
    assert exception.context["compensation"].startswith("cancel ERP sales order ")
    return order, exception


def held(cpq_quote_id: str) -> Order:
    """The order of that CPQ quote, once the worker has held it."""
    return wait_until(
        lambda: Order.objects.filter(
            quote__cpq_quote_id=cpq_quote_id, state=OrderState.ON_HOLD
        ).first(),
        what="the order to be held",
    )


def finished(replay: Replay) -> Any:
    def check() -> Replay | None:
        fresh = Replay.objects.get(pk=replay.pk)
        return fresh if fresh.finished_at is not None else None

    return wait_until(check, what=f"{replay} to finish")


def test_an_approved_replay_reruns_the_failed_step_and_skips_the_existing_effects(
    rig: Rig, make_user
):
    # given
    order, exception = billing_refuses_the_subscription(rig)
    run = WorkflowRun.objects.get(subject_id=order.enterprise_id)
    mapping = ProductMapping.objects.get(product__sku="PLAT-PRO", system="billing")
    with audit_context(actor=Actor.system("worker"), reason="billing plan remapped"):
        mapping.external_id = "prod_platpro_2026"  # the steward's fix: a new price key
        mapping.save()
    maker, checker = make_user("sam", "sales_ops"), make_user("fiona", "finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.WORKFLOW, workflow_run=run, actor=Actor.person(maker),
        reason="billing plan remapped",
    )  # fmt: skip
    assert [(row["name"], row["action"]) for row in replay.preview["steps"]] == [
        ("validate_quote", "check"), ("resolve_customer", "check"), ("map_products", "check"),
        ("split_lines", "check"), ("check_tax_and_entity", "check"),
        ("upsert_customer_erp", "skip"), ("upsert_customer_billing", "skip"),
        ("create_erp_order", "skip"), ("await_financial_acceptance", "check"),
        ("create_subscription", "run"), ("send_one_time_lines", "run"),
        ("activate_contract", "check"),
    ]  # fmt: skip
    # when
    services.replay_approve(replay=replay, actor=Actor.person(checker), reason="mapping checked")
    done = finished(replay)
    # then
    assert (done.state, done.result_message) == ("succeeded", "every step succeeded")
    skipped = {step["name"] for step in done.result["steps"] if step["skipped_effect"]}
    assert skipped == {"upsert_customer_erp", "upsert_customer_billing", "create_erp_order"}
    assert Order.objects.get(pk=order.pk).state == OrderState.ACTIVE
    exception.refresh_from_db()
    assert (exception.state, exception.resolution_code) == ("resolved", "retry_succeeded")
    assert [row["externalId"] for row in rig_records(rig, "erp", "salesorders")] == [
        order.enterprise_id
    ]
    assert len(rig_records(rig, "erp", "customers")) == 1
    assert len(rig_records(rig, "billing", "customers")) == 1
    subscriptions = rig_records(rig, "billing", "subscriptions")
    assert [row["metadata"]["tandem_order"] for row in subscriptions] == [order.enterprise_id]
    assert list(
        done.history.order_by("history_id").values_list("state", "history_user__username")
    ) == [
        ("requested", "sam"), ("approved", "fiona"), ("running", "worker"),
        ("running", "worker"), ("succeeded", "worker"),
    ]  # fmt: skip


def test_an_approved_compensation_cancels_the_erp_sales_order(rig: Rig, make_user):
    # given
    order, exception = billing_refuses_the_subscription(rig)
    (sales_order,) = rig_records(rig, "erp", "salesorders")
    assert sales_order["orderStatus"] == "pendingFulfillment"
    maker, checker = make_user("ivy", "integration_support"), make_user("fiona", "finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.COMPENSATION, step_run=exception.step_run, compensation="cancel_erp_order",
        actor=Actor.person(maker), reason="billing cannot take this deal",
    )  # fmt: skip
    key = f"{order.enterprise_id}:v1:compensate:cancel_erp_order"
    assert replay.preview["sends"] == [
        {"system": "erp", "operation": "sales_order_cancel", "target": sales_order["internalId"],
         "idempotency_key": key, "already_done": False},
    ]  # fmt: skip
    # when
    services.replay_approve(replay=replay, actor=Actor.person(checker), reason="agreed")
    done = finished(replay)
    # then
    assert (done.state, done.result_message) == (
        "succeeded",
        f"ERP sales order {sales_order['internalId']} cancelled (cancelled)",
    )
    (after,) = rig_records(rig, "erp", "salesorders")
    assert (after["internalId"], after["orderStatus"]) == (sales_order["internalId"], "cancelled")
    assert Order.objects.get(pk=order.pk).state == OrderState.CANCELLED
    assert WorkflowRun.objects.get(pk=exception.workflow_run_id).state == RunState.CANCELLED
    exception.refresh_from_db()
    assert (exception.state, exception.resolution_code) == ("resolved", "compensated")
    assert StepEffect.objects.get(idempotency_key=key).external_id == sales_order["internalId"]
    assert rig_records(rig, "billing", "subscriptions") == []
    newest = Order.objects.get(pk=order.pk).history.order_by("-history_id").first()
    assert (newest.history_user.username, newest.history_change_reason) == (
        "worker",
        f"{replay} approved by fiona: billing cannot take this deal",
    )


def test_an_approved_corrected_address_is_validated_and_reaches_the_erp_customer(
    rig: Rig, make_user
):
    # given: the CRM holds an all-zero postcode, which the tax engine always refuses
    quote = cpq_quote(rig.sandbox, crm_account(rig.sandbox, BillingPostalCode="00000"))
    response = rig.sandbox.post("cpq", f"/quotes/{quote['Id']}/approve")
    assert response.status_code == 200, response.text
    order = held(quote["Id"])
    exception = OperationalException.objects.get(order=order)
    assert (exception.step, exception.category) == ("check_tax_and_entity", "tax")
    maker, checker = make_user("fiona", "finance_ops"), make_user("frank", "finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exception.step_run, actor=Actor.person(maker),
        reason="postcode mistyped in the CRM",
        corrected_payload={"line1": "1 High Street", "city": "London", "postcode": "EC1A 1AA",
                           "country": "GB"},
    )  # fmt: skip
    assert replay.original_payload == {
        "line1": "1 High Street", "city": "London", "postcode": "00000", "country": "GB",
    }  # fmt: skip
    # when
    services.replay_approve(replay=replay, actor=Actor.person(checker), reason="agreed")
    done = finished(replay)
    # then
    assert (done.state, done.result_message) == ("succeeded", "every step succeeded")
    order = Order.objects.select_related("account").get(pk=order.pk)
    assert order.state == OrderState.ACTIVE
    assert order.account is not None
    assert order.account.postcode == "EC1A 1AA"
    corrected = order.account.history.filter(postcode="EC1A 1AA").order_by("history_id").first()
    assert (corrected.history_user.username, corrected.history_change_reason) == (
        "worker",
        f"{replay} approved by frank: address corrected",
    )
    (customer,) = rig_records(rig, "erp", "customers")
    assert customer["billAddress"]["zip"] == "EC1A 1AA"
