"""The Tryton connector's JSON-RPC plumbing without a Tryton: values, error classes, and the
HTTP statuses a Tryton (or the proxy in front of it) answers, from a loopback server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.tryton.codec import rpc_decode, rpc_encode, rpc_error
from orchestration.connectors.tryton.erp import TrytonErp
from orchestration.connectors.tryton.polling import cursor_format, cursor_parse
from orchestration.connectors.tryton.session import sessions_forget
from orchestration.models import OutboundCall
from tests.orchestration.conftest import RemoteSystem


def test_decimals_and_dates_travel_as_trytons_json_classes():
    # given
    value = {"price": Decimal("25.00"), "on": dt.date(2026, 1, 5), "n": [1, "a"]}
    # when
    encoded = rpc_encode(value)
    # then
    assert encoded == {
        "price": {"__class__": "Decimal", "decimal": "25.00"},
        "on": {"__class__": "date", "year": 2026, "month": 1, "day": 5},
        "n": [1, "a"],
    }
    assert rpc_decode(encoded) == value


def test_a_datetime_from_tryton_is_utc_and_round_trips_through_a_cursor():
    # given
    answer = {"__class__": "datetime", "year": 2026, "month": 11, "day": 26, "hour": 4,
              "minute": 30, "second": 1, "microsecond": 250}  # fmt: skip
    # when
    stamp = rpc_decode(answer)
    cursor = cursor_format(stamp, 42)
    # then
    assert stamp == dt.datetime(2026, 11, 26, 4, 30, 1, 250, tzinfo=dt.UTC)
    assert cursor == "2026-11-26T04:30:01.000250|42"
    assert cursor_parse(cursor) == (dt.datetime(2026, 11, 26, 4, 30, 1, 250), 42)
    assert cursor_parse("") == (None, 0)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (["UserError", ["You cannot delete a quoted sale.", "Cancel it first.", None]],
         ("permanent", "user_error", "You cannot delete a quoted sale. — Cancel it first.")),
        (["UserWarning", ["invoice_date_future_1", "The invoice date is in the future.", ""]],
         ("permanent", "user_warning",
          "The invoice date is in the future. [warning: invoice_date_future_1]")),
        (["UserError", ["The code on party must be unique.", "", None]],
         ("retryable", "conflict", "The code on party must be unique.")),
        (["UserError", ['You can not call "quote" on "11 [ORD-000023]" of "Sale".', "", None]],
         ("retryable", "conflict", 'You can not call "quote" on "11 [ORD-000023]" of "Sale".')),
        (["ConcurrencyException", ["Records were modified in the meanwhile"]],
         ("retryable", "concurrency_exception", "Records were modified in the meanwhile")),
        (["'NoneType' object has no attribute 'id'", "Traceback (most recent call last):\n..."],
         ("retryable", "server_error", "'NoneType' object has no attribute 'id'")),
    ],
)  # fmt: skip
def test_errors_in_a_200_answer_are_classed_and_never_keep_a_traceback(
    error: list[Any], expected: tuple[str, str, str]
):
    # given
    body = {"id": 1, "error": error}
    # when
    classed = rpc_error(body)
    # then
    assert classed == expected
    assert rpc_error({"id": 1, "result": [1]}) is None


@pytest.fixture
def tryton_at_remote(
    erp_connector: Any, remote: RemoteSystem, monkeypatch: pytest.MonkeyPatch
) -> TrytonErp:
    monkeypatch.setenv("CONNECTOR_ERP_LOGIN", "tandem")
    monkeypatch.setenv("CONNECTOR_ERP_PASSWORD", "secret-password")
    sessions_forget()
    return TrytonErp()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (503, "server_error")])
def test_throttling_and_server_errors_are_retryable(
    tryton_at_remote: TrytonErp, remote: RemoteSystem, status: int, kind: str
):
    # given
    remote.respond(status, text="busy", headers={"Retry-After": "7"})
    # when
    with pytest.raises(RetryableError) as raised:
        tryton_at_remote.customer_find(reference="ACC-000001")
    # then
    assert (raised.value.status, raised.value.kind, raised.value.retry_after) == (status, kind, 7)
    call = OutboundCall.objects.get()
    assert (call.operation, call.path) == ("login", "/erp/rpc/")
    assert "secret-password" not in call.request_body


@pytest.mark.django_db(transaction=True)
def test_a_refused_login_is_permanent(tryton_at_remote: TrytonErp, remote: RemoteSystem):
    # given
    remote.respond(401, text="")
    # when
    with pytest.raises(PermanentError) as raised:
        tryton_at_remote.customer_find(reference="ACC-000001")
    # then
    assert (raised.value.status, raised.value.kind) == (401, "auth")
    assert len(remote.received) == 1
