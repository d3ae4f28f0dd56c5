"""The contract page: versions side by side, and the actions (renew, cancel at term end or
now with credit, change a quantity), each with a reason and a dry run first; a credit waits
for a second person from finance. Permissions are checked on the server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from orchestration.workflows.models import WorkflowRun
from q2c import lifecycle, services
from q2c.models import Contract, ContractChangeRequest, Order, VersionCause, VersionKind
from tests import factories

pytestmark = pytest.mark.django_db


def _contract() -> Contract:
    start = timezone.localdate().replace(day=1)
    end = lifecycle.add_months(start, 12) - dt.timedelta(days=1)
    contract = factories.contract(
        start_date=start,
        end_date=end,
        lines=[factories.line(term_start=start, term_end=end)],
    )
    services.contract_activate(contract=contract, actor=factories.actor(), reason="ERP accepted")
    contract.refresh_from_db()
    return contract


def _post(client: Any, contract: Contract, **data: str) -> Any:
    return client.post(reverse("contract-action", args=[contract.enterprise_id]), data)


def _versions(contract: Contract) -> list[tuple[int, str, str]]:
    return list(contract.versions.order_by("number").values_list("number", "kind", "state"))


def test_the_page_shows_versions_side_by_side_with_what_changed_and_why(client, make_user):
    # given
    contract = _contract()
    lifecycle.contract_change_record(
        contract=contract, kind=VersionKind.AMENDMENT, effective_date=contract.end_date,
        lines=[factories.line(quantity=Decimal("15"))], cause=VersionCause.EVENT,
        cause_ref="amd-7", change_key="amd-7", actor=factories.actor(), reason="five more seats",
    )  # fmt: skip
    client.force_login(make_user("audrey", "auditor"))
    # when
    response = client.get(reverse("contract-detail", args=[contract.enterprise_id]))
    # then
    assert response.status_code == 200
    page = response.content.decode()
    assert "<th>v1</th><th>v2</th>" in page
    assert "10 x 25.00" in page and "15 x 25.00" in page
    assert "SKU-X 10 → 15" in page and "five more seats" in page
    assert 'id="contract-change"' not in page  # an auditor changes nothing


def test_cancel_at_term_end_previews_then_records_the_version_and_starts_its_workflow(
    client, make_user
):
    # given
    contract = _contract()
    client.force_login(make_user("fiona", "finance_ops"))
    # when: the dry run
    preview = _post(client, contract, action="cancel_term_end", reason="customer gave notice")
    # then: what each system will receive, nothing recorded
    assert preview.status_code == 200
    page = preview.content.decode()
    assert (
        f"subscription cancelled at the end of its billing period (set on {contract.end_date}), "
        "nothing prorated"
    ) in page
    assert _versions(contract) == [(1, "initial", "active")]
    # when: confirmed
    done = _post(
        client, contract, action="cancel_term_end", reason="customer gave notice", step="confirm"
    )
    # then
    assert done.status_code == 302
    assert _versions(contract) == [(1, "initial", "active"), (2, "cancellation", "pending")]
    version = contract.versions.get(number=2)
    assert (version.cause, version.cause_ref, version.effective_date, version.reason) == (
        "operator", "fiona", contract.end_date, "customer gave notice",
    )  # fmt: skip
    run = WorkflowRun.objects.get(subject_id=contract.enterprise_id, subject_version=2)
    assert run.kind == "cancellation"
    # and the contract's timeline shows the version's workflow
    timeline = client.get(reverse("contract-timeline", args=[contract.enterprise_id]))
    assert "check_cancellation" in timeline.content.decode()


def test_a_cancellation_now_with_credit_waits_for_a_second_person_from_finance(client, make_user):
    # given
    contract = _contract()
    maker = make_user("fiona", "finance_ops")
    checker = make_user("frank", "finance_ops")
    client.force_login(maker)
    # when
    _post(client, contract, action="cancel_now", reason="customer left", step="confirm")
    # then: a request, nothing recorded or sent
    change = ContractChangeRequest.objects.get(contract=contract)
    assert (change.state, change.requested_by, change.action) == ("requested", maker, "cancel_now")
    assert Decimal(change.preview["credit_total"]) > 0
    assert _versions(contract) == [(1, "initial", "active")]
    # when the requester tries to approve it herself
    url = reverse("contract-request-decide", args=[contract.enterprise_id, change.pk])
    own = client.post(url, {"decision": "approve", "reason": "fine"}, follow=True)
    # then: refused, nothing changed
    assert "a second person approves a credit" in own.content.decode()
    change.refresh_from_db()
    assert change.state == "requested" and _versions(contract) == [(1, "initial", "active")]
    # when a second person approves
    client.force_login(checker)
    client.post(url, {"decision": "approve", "reason": "checked the usage"})
    # then
    change.refresh_from_db()
    assert (change.state, change.decided_by) == ("approved", checker)
    assert change.version is not None and change.version.kind == "cancellation"
    assert change.version.changes["credit_total"] == change.preview["credit_total"]
    assert WorkflowRun.objects.filter(kind="cancellation").count() == 1


def test_sales_ops_may_not_cancel_and_auditors_may_not_change_anything(client, make_user):
    # given
    contract = _contract()
    for who, action in (("sam", "cancel_term_end"), ("audrey", "renew")):
        role = "sales_ops" if who == "sam" else "auditor"
        client.force_login(make_user(who, role))
        # when
        response = _post(client, contract, action=action, reason="try", step="confirm")
        # then
        assert response.status_code == 403
    assert _versions(contract) == [(1, "initial", "active")]
    assert ContractChangeRequest.objects.count() == 0


def test_an_increase_is_an_amendment_and_a_decrease_asks_for_approval(client, make_user):
    # given
    contract = _contract()
    client.force_login(make_user("sam", "sales_ops"))
    today = timezone.localdate().isoformat()
    # when
    _post(client, contract, action="change_quantity", product_code="SKU-X", quantity="12",
          effective_date=today, reason="two more seats", step="confirm")  # fmt: skip
    # then
    order = Order.objects.get(amends=contract)
    assert [line.quantity for line in order.lines.all()] == [Decimal("12.0000")]
    assert _versions(contract)[-1] == (2, "amendment", "pending")
    assert WorkflowRun.objects.get(subject_id=order.enterprise_id).kind == "amendment"
    # when a decrease (a credit) is asked for
    _post(client, contract, action="change_quantity", product_code="SKU-X", quantity="4",
          effective_date=today, reason="fewer seats", step="confirm")  # fmt: skip
    # then
    assert ContractChangeRequest.objects.get().action == "change_quantity"
    assert Order.objects.filter(amends=contract).count() == 1


def test_a_bad_quantity_is_refused_with_the_reason_and_changes_nothing(client, make_user):
    contract = _contract()
    client.force_login(make_user("sam", "sales_ops"))
    response = _post(
        client, contract, action="change_quantity", product_code="SKU-X", quantity="-3",
        reason="oops", step="confirm", follow="1",
    )  # fmt: skip
    assert response.status_code == 302
    follow = client.get(response.url)
    assert "the quantity is a whole number of at least 1" in follow.content.decode()
    assert _versions(contract) == [(1, "initial", "active")]


def test_renew_records_the_next_term_with_the_uplift(client, make_user):
    contract = _contract()
    lifecycle.contract_renewal_terms_set(
        contract=contract, auto_renew=False, uplift_percent=Decimal("3"), actor=factories.actor(),
        reason="uplift agreed",
    )  # fmt: skip
    client.force_login(make_user("sam", "sales_ops"))
    _post(client, contract, action="renew", reason="renewal signed", step="confirm")
    contract.refresh_from_db()
    version = contract.versions.get(number=2)
    assert (contract.state, version.kind, version.state) == ("renewed", "renewal", "pending")
    assert [line.unit_price for line in version.lines.all()] == [Decimal("25.7500")]


def test_a_rejected_credit_records_nothing_and_sends_nothing(client, make_user):
    # given
    contract = _contract()
    client.force_login(make_user("sam", "sales_ops"))
    today = timezone.localdate().isoformat()
    _post(client, contract, action="change_quantity", product_code="SKU-X", quantity="4",
          effective_date=today, reason="fewer seats", step="confirm")  # fmt: skip
    change = ContractChangeRequest.objects.get()
    # when
    client.force_login(make_user("frank", "finance_ops"))
    client.post(
        reverse("contract-request-decide", args=[contract.enterprise_id, change.pk]),
        {"decision": "reject", "reason": "the customer still uses them"},
    )
    # then
    change.refresh_from_db()
    assert (change.state, change.decision_note, change.version) == (
        "rejected", "the customer still uses them", None,
    )  # fmt: skip
    assert _versions(contract) == [(1, "initial", "active")]
    assert not Order.objects.filter(amends=contract).exists()
    assert WorkflowRun.objects.count() == 0
