"""Reading the audit trail: filters, field-level diffs, keyset pages and as-of."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from console.selectors import audit as sel
from tests import factories
from tests.console.audit.conftest import DAY1, DAY2, DAY3


def summary(page: sel.HistoryPage) -> list[tuple[str, str, str, str, str]]:
    return [(e.model, e.record, e.kind, e.actor, e.reason) for e in page.entries]


def iso(value: dt.datetime) -> str:
    return value.isoformat()


@pytest.fixture
def auditor(make_user: Any) -> Any:
    return make_user("audrey", "auditor")


@pytest.mark.django_db
def test_one_records_history_newest_first_with_field_level_diffs(story, auditor):
    # given
    order = story.order
    created, totalled, held, released = story.rows
    # when
    page = sel.history_page(
        user=auditor, flt=sel.HistoryFilter(models=("q2c.order",), record=order.enterprise_id)
    )
    # then
    assert [(e.kind, e.actor, e.actor_is_system, e.reason, e.when) for e in page.entries] == [
        ("changed", "bob", False, "credit approved", DAY3),
        ("changed", "alice", False, "credit check", DAY2),
        ("changed", "worker", True, "test setup", DAY1 + dt.timedelta(minutes=1)),
        ("created", "worker", True, "test setup", DAY1),
    ]
    assert [[(c.field, c.old, c.new) for c in e.changes] for e in page.entries] == [
        [
            ("state_changed_at", iso(held.state_changed_at), iso(released.state_changed_at)),
            ("state", "on_hold", "received"),
            ("held_from_state", "received", ""),
            ("hold_reason", "credit check", ""),
        ],
        [
            ("state_changed_at", iso(totalled.state_changed_at), iso(held.state_changed_at)),
            ("state", "received", "on_hold"),
            ("held_from_state", "", "received"),
            ("hold_reason", "", "credit check"),
        ],
        [("total_amount", "0.0000", "250.0000")],
        [
            ("enterprise_id", None, order.enterprise_id),
            ("created_at", None, iso(created.created_at)),
            ("state_changed_at", None, iso(created.state_changed_at)),
            ("account_id", None, str(order.account_id)),
            ("legal_entity_id", None, str(order.legal_entity_id)),
            ("currency", None, "GBP"),
            ("total_amount", None, "0.0000"),
            ("state", None, "received"),
        ],
    ]
    assert page.next_cursor is None


@pytest.mark.django_db
def test_record_may_be_named_by_primary_key(story, auditor):
    # given
    by_id = sel.HistoryFilter(models=("q2c.order",), record=str(story.order.pk))
    # when
    page = sel.history_page(user=auditor, flt=by_id)
    # then
    assert [e.history_id for e in page.entries] == [r.history_id for r in reversed(story.rows)]


@pytest.mark.django_db
def test_actor_filter_finds_a_persons_changes_across_every_model(story, auditor):
    # given: alice also changed nothing else; bob's change is not hers
    order = story.order.enterprise_id
    # when
    page = sel.history_page(user=auditor, flt=sel.HistoryFilter(actor="alice"))
    # then
    assert summary(page) == [("q2c.order", order, "changed", "alice", "credit check")]


@pytest.mark.django_db
def test_actor_kind_separates_people_from_system_actors(story, auditor):
    # given
    order = story.order.enterprise_id
    flt = {"models": ("q2c.order",), "record": order}
    # when
    people = sel.history_page(user=auditor, flt=sel.HistoryFilter(**flt, actor_kind="person"))
    system = sel.history_page(user=auditor, flt=sel.HistoryFilter(**flt, actor_kind="system"))
    # then
    assert [(e.actor, e.reason) for e in people.entries] == [
        ("bob", "credit approved"),
        ("alice", "credit check"),
    ]
    assert [(e.actor, e.kind) for e in system.entries] == [
        ("worker", "changed"),
        ("worker", "created"),
    ]


@pytest.mark.django_db
def test_date_range_is_since_inclusive_until_exclusive(story, auditor):
    # given
    flt = sel.HistoryFilter(models=("q2c.order",), since=DAY1 + dt.timedelta(minutes=1), until=DAY3)
    # when
    page = sel.history_page(user=auditor, flt=flt)
    # then
    assert [e.when for e in page.entries] == [DAY2, DAY1 + dt.timedelta(minutes=1)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, expected",
    [
        ("hold_reason", [DAY3, DAY2]),
        ("state", [DAY3, DAY2, DAY1]),
        ("total_amount", [DAY1 + dt.timedelta(minutes=1), DAY1]),
        ("cancellation_reason", []),
    ],
)
def test_field_filter_keeps_the_rows_that_changed_it(story, auditor, field, expected):
    # given: a creation counts as setting a field when it gives it a value
    flt = sel.HistoryFilter(models=("q2c.order",), field=field)
    # when
    page = sel.history_page(user=auditor, flt=flt)
    # then
    assert [e.when for e in page.entries] == expected


@pytest.mark.django_db
def test_field_filter_without_a_model_searches_the_models_that_have_the_field(story, auditor):
    # given: hold_reason exists on orders only
    flt = sel.HistoryFilter(field="hold_reason")
    # when
    page = sel.history_page(user=auditor, flt=flt)
    # then
    assert [(e.model, e.actor) for e in page.entries] == [
        ("q2c.order", "bob"),
        ("q2c.order", "alice"),
    ]


@pytest.mark.django_db
def test_keyset_pages_walk_every_row_once_in_order(story, auditor):
    # given: a second order interleaves its rows across models and time
    factories.order(account=story.order.account)
    flt = sel.HistoryFilter()
    everything = sel.history_page(user=auditor, flt=flt, size=500).entries
    # when
    walked: list[tuple[str, int]] = []
    after = None
    pages = 0
    while True:
        page = sel.history_page(user=auditor, flt=flt, after=after, size=3)
        walked.extend((e.model, e.history_id) for e in page.entries)
        pages += 1
        if page.next_cursor is None:
            break
        after = page.next_cursor
    # then
    assert walked == [(e.model, e.history_id) for e in everything]
    assert pages == -(-len(everything) // 3)
    assert [e.cursor for e in everything] == sorted((e.cursor for e in everything), reverse=True)


@pytest.mark.django_db
def test_history_iter_yields_every_matching_row_in_chunks(story, auditor):
    # given
    flt = sel.HistoryFilter(models=("q2c.order",))
    # when
    rows = [e.history_id for e in sel.history_iter(user=auditor, flt=flt, chunk=1)]
    # then
    assert rows == [r.history_id for r in reversed(story.rows)]


@pytest.mark.django_db
def test_a_model_outside_the_users_role_is_refused(story, make_user):
    # given: a data steward may view master data but not orders
    steward = make_user("stella", "data_steward")
    # when / then
    with pytest.raises(PermissionError, match=r"you may not view the history of q2c\.order"):
        sel.history_page(user=steward, flt=sel.HistoryFilter(models=("q2c.order",)))


@pytest.mark.django_db
def test_without_a_model_only_the_visible_models_are_read(story, make_user):
    # given
    steward = make_user("stella", "data_steward")
    # when
    page = sel.history_page(user=steward, flt=sel.HistoryFilter(), size=500)
    # then
    assert {e.model for e in page.entries} == {"masterdata.account", "masterdata.legalentity"}


@pytest.mark.django_db
def test_every_history_model_is_tracked():
    # given / when
    keys = [t.key for t in sel.tracked_models()]
    # then
    assert keys == [
        "exceptions.exceptioncomment",
        "exceptions.operationalexception",
        "exceptions.replay",
        "masterdata.account",
        "masterdata.accountalias",
        "masterdata.duplicatecandidate",
        "masterdata.externalid",
        "masterdata.legalentity",
        "masterdata.mergerecord",
        "masterdata.product",
        "masterdata.productmapping",
        "orchestration.deadletteraction",
        "orchestration.driftitem",
        "orchestration.reconciliationrun",
        "orchestration.retentionpurge",
        "orchestration.workflowrun",
        "q2c.contract",
        "q2c.contractchangerequest",
        "q2c.contractline",
        "q2c.contractversion",
        "q2c.creditnote",
        "q2c.invoice",
        "q2c.invoiceline",
        "q2c.order",
        "q2c.orderline",
        "q2c.payment",
        "q2c.quote",
        "q2c.quoteline",
        "q2c.refund",
        "q2c.usagedelivery",
        "q2c.usagerecord",
        "q2c.usagereport",
    ]


# --- As of a date ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "when, expected",
    [
        (DAY1 - dt.timedelta(seconds=1), None),
        (DAY1, ("received", "", "0.0000")),
        (DAY2 + dt.timedelta(hours=5), ("on_hold", "credit check", "250.0000")),
        (DAY3, ("received", "", "250.0000")),
    ],
)
def test_record_as_of_a_date(story, when, expected):
    # given
    tracked = sel.tracked_model("q2c.order")
    assert tracked is not None
    # when
    found = sel.record_as_of(tracked=tracked, record=story.order.enterprise_id, when=when)
    # then
    values = dict(found.values)
    got = (values["state"], values["hold_reason"], values["total_amount"]) if found.row else None
    assert got == expected


@pytest.mark.django_db
def test_a_deleted_record_did_not_exist_after_its_deletion(auditor):
    # given: an alias row deleted (test setup only; no service deletes aliases)
    account = factories.account()
    from masterdata.models import AccountAlias

    alias = AccountAlias.objects.create(alias="ACC-OLD-1", account=account)
    alias.delete()
    tracked = sel.tracked_model("masterdata.accountalias")
    assert tracked is not None
    # when
    found = sel.record_as_of(
        tracked=tracked, record=str(alias.pk or 0), when=dt.datetime.now(dt.UTC)
    )
    # then
    assert found.row is None


@pytest.mark.django_db
def test_a_database_without_limits_in_a_union_reads_the_same_page(story, auditor, monkeypatch):
    # given: the page across every model, read with one UNION ALL (PostgreSQL)
    flt = sel.HistoryFilter(actor="alice")
    with_union = [
        (e.model, e.row.history_id) for e in sel.history_page(user=auditor, flt=flt).entries
    ]
    # when: the database cannot LIMIT inside a UNION (SQLite, the demo's database)
    from django.db import connection

    monkeypatch.setattr(connection.features, "supports_slicing_ordering_in_compound", False)
    without = [(e.model, e.row.history_id) for e in sel.history_page(user=auditor, flt=flt).entries]
    # then
    assert without == with_union
    assert with_union[0][0] == "q2c.order"
