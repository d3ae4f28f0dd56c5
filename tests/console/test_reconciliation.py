"""Finance's reconciliation pages: who may see and act, resolve (one and in bulk), CSV."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from core.audit import Actor
from orchestration.reconciliation.models import DriftItem, ReconciliationRun
from tests import factories

pytestmark = pytest.mark.django_db


def _item(n: int = 1, **changes: object) -> DriftItem:
    run = ReconciliationRun.objects.create(system="billing", triggered_by="scheduler")
    values: dict[str, object] = {
        "key": f"billing:invoice:INV-00000{n}:in_{n}:status", "system": "billing",
        "object_type": "invoice", "drift_type": "status", "tandem_ref": f"INV-00000{n}",
        "remote_ref": f"in_{n}", "currency": "GBP", "tandem_amount": Decimal("250"),
        "remote_amount": Decimal("250"), "difference": Decimal("0"),
        "detail": "posted in Tandem, void in billing", "first_run": run, "last_run": run,
        "tandem_record": {"status": "posted"}, "remote_record": {"status": "void"},
    }  # fmt: skip
    values.update(changes)
    return DriftItem.objects.create(**values)


@pytest.mark.parametrize(
    ("role", "status"), [("finance_ops", 200), ("auditor", 200), ("sales_ops", 403)]
)
def test_the_drift_page_and_its_drill_down_are_served_to_those_who_may_read_drift(
    client, make_user, role, status
):
    # given
    item = _item()
    client.force_login(make_user("someone", role))
    # when
    pages = [reverse("reconciliation"), reverse("drift-detail", args=[item.pk])]
    # then
    assert [client.get(url).status_code for url in pages] == [status, status]


def test_the_drill_down_shows_each_side(client, make_user):
    # given
    item = _item()
    client.force_login(make_user("fin", "finance_ops"))
    # when
    response = client.get(reverse("drift-detail", args=[item.pk]))
    # then
    assert response.context["sides"] == [("status", "posted", "void")]


@pytest.mark.parametrize("role", ["auditor", "integration_support", "sales_ops"])
def test_only_finance_ops_resolve_and_start_runs(client, make_user, role):
    # given
    item = _item()
    client.force_login(make_user("someone", role))
    # when
    resolved = client.post(
        reverse("drift-resolve", args=[item.pk]), {"code": "timing", "reason": "x"}
    )
    started = client.post(reverse("reconciliation-run"), {"system": "billing"})
    # then
    assert (resolved.status_code, started.status_code) == (403, 403)
    item.refresh_from_db()
    assert (item.state, item.history.count()) == ("open", 1)


def test_finance_ops_resolve_with_a_code_and_a_reason_recorded_in_history(client, make_user):
    # given
    item = _item()
    user = make_user("fin", "finance_ops")
    client.force_login(user)
    # when
    client.post(
        reverse("drift-resolve", args=[item.pk]),
        {"code": "fixed_downstream", "reason": "re-issued in billing"},
    )
    # then
    item.refresh_from_db()
    assert (item.state, item.resolution_code, item.resolution_note) == (
        "resolved", "fixed_downstream", "re-issued in billing",
    )  # fmt: skip
    last = item.history.order_by("-history_id").first()
    assert last is not None
    assert (last.history_user, last.history_change_reason) == (user, "re-issued in billing")


def test_a_resolve_without_a_code_is_refused_and_changes_nothing(client, make_user):
    # given
    item = _item()
    client.force_login(make_user("fin", "finance_ops"))
    # when
    response = client.post(reverse("drift-resolve", args=[item.pk]), {"reason": "why"})
    # then
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.state, item.history.count()) == ("open", 1)


def test_bulk_resolve_reports_each_item(client, make_user):
    # given
    first, second = _item(1), _item(2)
    from orchestration.reconciliation.services import drift_resolve

    drift_resolve(item=second, code="timing", actor=Actor.system("worker"), reason="earlier")
    client.force_login(make_user("fin", "finance_ops"))
    # when
    response = client.post(
        reverse("drift-bulk-resolve"),
        {"item": [first.pk, second.pk, 999999], "code": "accepted", "reason": "month-end"},
    )
    # then
    assert response.status_code == 200
    assert [(line.item_id, line.ok) for line in response.context["report"]] == [
        (first.pk, True), (second.pk, False), (999999, False),
    ]  # fmt: skip
    first.refresh_from_db()
    assert first.state == "resolved"


def test_filters_live_in_the_query_string_and_bad_values_are_dropped(client, make_user):
    # given
    _item(1, drift_type="amount", difference=Decimal("50"))
    _item(2)
    client.force_login(make_user("fin", "finance_ops"))
    # when
    amount = client.get(reverse("reconciliation"), {"type": "amount", "min": "10"})
    junk = client.get(reverse("reconciliation"), {"type": "<script>", "min": "NaN", "age": "9"})
    # then
    assert [i.drift_type for i in amount.context["page"]] == ["amount"]
    assert junk.status_code == 200
    assert len(junk.context["page"]) == 2


def test_csv_export_quotes_what_a_spreadsheet_would_run(client, make_user):
    # given
    _item(1, remote_ref="=HYPERLINK(1)")
    client.force_login(make_user("fin", "finance_ops"))
    # when
    response = client.get(reverse("reconciliation-export"))
    body = b"".join(response.streaming_content).decode()
    # then
    lines = body.strip().splitlines()
    assert len(lines) == 2
    assert "'=HYPERLINK(1)" in lines[1]


def test_the_books_page_tables_bookings_and_billings_with_its_chart(client, make_user):
    # given
    invoice = factories.invoice()
    from masterdata.services.records import external_id_link

    external_id_link(
        record=invoice, system="billing", object_type="invoice", external_id="in_1",
        actor=factories.actor(), reason="test setup",
    )  # fmt: skip
    client.force_login(make_user("fin", "finance_ops"))
    # when
    response = client.get(reverse("reconciliation-books"))
    # then
    [row] = response.context["rows"]
    assert (row.billings, row.bookings, row.currency) == (Decimal("100.0000"), 0, "GBP")
    assert b'id="books-chart"' in response.content


def test_the_dashboard_shows_reconciliation_effort(client, make_user):
    # given one open drift item, and one resolved after it was open two days
    from django.utils import timezone

    _item(1, currency="GBP", difference=Decimal("50"))
    closed = _item(2, state="resolved", difference=Decimal("5"))
    DriftItem.objects.filter(pk=closed.pk).update(  # test setup: the dates, not a workflow
        first_seen_at=timezone.now() - timezone.timedelta(days=3),
        closed_at=timezone.now() - timezone.timedelta(days=1),
    )
    client.force_login(make_user("fin", "finance_ops"))
    # when
    effort = client.get(reverse("dashboard")).context["effort"]
    # then
    assert [n for _, _, n in effort.open_by_age] == [1, 0, 0, 0]
    assert effort.open_value == [("GBP", Decimal("50.0000"))]
    assert [(days, n, avg.days if avg else None) for days, n, avg in effort.closed] == [
        (30, 1, 2),
        (90, 1, 2),
    ]
