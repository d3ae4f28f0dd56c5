import datetime as dt
import json
import logging

import pytest
from django.core.checks import Error
from django.db import transaction

from core.logging import CorrelationIdFilter, correlation
from core.records import SYSTEMS
from orchestration.checks import connectors_check
from orchestration.connectors.errors import (
    CallInsideTransaction,
    ConnectorConfigurationError,
    PermanentError,
    RetryableError,
)
from orchestration.connectors.transport import (
    ConnectorConfig,
    Transport,
    connector_config,
    retry_after_parse,
)
from orchestration.models import OutboundCall

ORDER_BODY = {
    "externalId": "ORD-000001",
    "customer": {
        "name": "Northwind Traders Ltd",
        "email": "ap@northwind.example",
        "Tax-ID": "GB123456789",
        "billingAddress": {"line1": "1 High Street", "city": "London"},
        "contacts": [{"name": "Ada", "phone": "+44 20 7946 0000"}],
    },
    "payment": {"cardNumber": "4242424242424242", "iban": "GB33BUKB20201555555555"},
    "apiKey": "leaked-key",
    "lines": [{"item": "PLAT-PRO", "quantity": "25", "rate": "40.00"}],
}


def test_defaults_point_every_system_at_the_sandbox():
    # when
    configs = [connector_config(system) for system in SYSTEMS]
    # then
    assert [(c.system, c.base_url, c.credential_env) for c in configs] == [
        (system, f"http://127.0.0.1:8100/{system}/", f"CONNECTOR_{system.upper()}_API_KEY")
        for system in SYSTEMS
    ]
    assert [(c.connect_timeout, c.read_timeout) for c in configs] == [(3.05, 10.0)] * 6


@pytest.mark.django_db(transaction=True)
def test_successful_call_sends_keys_and_records_a_redacted_row(remote, erp_connector):
    # given
    remote.respond(201, json_body={"id": "SO-1001", "customer": {"email": "ap@northwind.example"}})
    transport = Transport.for_system("erp")
    # when
    response = transport.call(
        operation="sales_order_create",
        method="post",
        path="sales-orders",
        json=ORDER_BODY,
        idempotency_key="ORD-000001:erp.sales_order:1",
        correlation_id="ORD-000001",
        attempt=2,
    )
    # then
    assert (response.status_code, response.body) == (
        201,
        {"id": "SO-1001", "customer": {"email": "ap@northwind.example"}},
    )
    [sent] = remote.received
    assert (sent.method, sent.path) == ("POST", "/erp/sales-orders")
    assert sent.headers["Idempotency-Key"] == "ORD-000001:erp.sales_order:1"
    assert sent.headers["X-Correlation-Id"] == "ORD-000001"
    assert sent.headers["Authorization"] == "Bearer sk_test_erp_123"
    assert json.loads(sent.body) == ORDER_BODY
    row = OutboundCall.objects.get()
    assert response.outbound_call_id == row.pk
    assert (
        row.system, row.operation, row.method, row.path, row.idempotency_key, row.status_code,
        row.outcome, row.error_class, row.error_message, row.retry_after_seconds, row.attempt,
        row.correlation_id,
    ) == (
        "erp", "sales_order_create", "POST", "/erp/sales-orders", "ORD-000001:erp.sales_order:1",
        201, "ok", "", "", None, 2, "ORD-000001",
    )  # fmt: skip
    assert row.latency_ms > 0
    assert json.loads(row.request_body) == {
        "externalId": "ORD-000001",
        "customer": {
            "name": "Northwind Traders Ltd",
            "email": "[redacted]",
            "Tax-ID": "[redacted]",
            "billingAddress": "[redacted]",
            "contacts": [{"name": "Ada", "phone": "[redacted]"}],
        },
        "payment": {"cardNumber": "[redacted]", "iban": "[redacted]"},
        "apiKey": "[redacted]",
        "lines": [{"item": "PLAT-PRO", "quantity": "25", "rate": "40.00"}],
    }
    assert json.loads(row.response_body) == {"id": "SO-1001", "customer": {"email": "[redacted]"}}
    stored = " ".join(str(value) for value in OutboundCall.objects.values().get().values())
    assert "sk_test_erp_123" not in stored
    assert "Authorization" not in stored


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "headers", "error_type", "kind", "retry_after"),
    [
        (400, {}, PermanentError, "validation", None),
        (401, {}, PermanentError, "auth", None),
        (403, {}, PermanentError, "auth", None),
        (404, {}, PermanentError, "not_found", None),
        (409, {}, PermanentError, "client_error", None),
        (422, {}, PermanentError, "validation", None),
        (429, {"Retry-After": "7"}, RetryableError, "rate_limited", 7),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, RetryableError, "rate_limited", 0),
        (429, {"Retry-After": "soon"}, RetryableError, "rate_limited", None),
        (500, {}, RetryableError, "server_error", None),
        (503, {"Retry-After": "30"}, RetryableError, "server_error", 30),
    ],
)
def test_error_statuses_are_classed(remote, erp_connector, status, headers, error_type, kind,
                                    retry_after):  # fmt: skip
    # given
    remote.respond(status, json_body={"message": f"refused with {status}"}, headers=headers)
    transport = Transport.for_system("erp")
    # when
    with pytest.raises(error_type) as raised:
        transport.call(operation="customer_get", method="GET", path="customers/C-1",
                       correlation_id="ACC-000009")  # fmt: skip
    # then
    row = OutboundCall.objects.get()
    error = raised.value
    assert (error.status, error.kind, error.message, error.retry_after, error.outbound_call_id) == (
        status, kind, f"refused with {status}", retry_after, row.pk,
    )  # fmt: skip
    assert error.retryable is (error_type is RetryableError)
    assert (row.status_code, row.outcome, row.error_class, row.error_message,
            row.retry_after_seconds, row.correlation_id) == (
        status, "retryable" if error.retryable else "permanent", kind, f"refused with {status}",
        retry_after, "ACC-000009",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_error_without_a_message_uses_the_reason_phrase(remote, erp_connector):
    # given
    remote.respond(502, text="<html>bad gateway</html>")
    # when
    with pytest.raises(RetryableError) as raised:
        Transport.for_system("erp").call(operation="ping", method="GET", path="ping")
    # then
    assert str(raised.value) == "erp 502 server_error: Bad Gateway"
    row = OutboundCall.objects.get()
    assert (row.response_body, row.correlation_id) == ("<html>bad gateway</html>", "")
    assert "X-Correlation-Id" not in remote.received[0].headers


def test_retry_after_http_date_counts_seconds_from_now():
    # given
    now = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=dt.UTC)
    # when / then
    assert retry_after_parse("Mon, 05 Jan 2026 10:02:00 GMT", now=now) == 120
    assert retry_after_parse("Mon, 05 Jan 2026 09:59:00 GMT", now=now) == 0
    assert retry_after_parse("120", now=now) == 120
    assert retry_after_parse("-5", now=now) is None
    assert retry_after_parse("", now=now) is None


@pytest.mark.django_db(transaction=True)
def test_read_timeout_is_retryable_and_recorded(remote, erp_connector, settings):
    # given
    settings.TANDEM_CONNECTORS["erp"]["read_timeout"] = 0.2
    remote.respond(200, json_body={"late": True}, hold_seconds=5)
    # when
    with pytest.raises(RetryableError) as raised:
        Transport.for_system("erp").call(
            operation="sales_order_create", method="POST", path="sales-orders",
            json={"externalId": "ORD-000002"}, idempotency_key="ORD-000002:erp:1",
        )  # fmt: skip
    # then
    row = OutboundCall.objects.get()
    assert (raised.value.kind, raised.value.status, raised.value.outbound_call_id) == (
        "timeout", None, row.pk,
    )  # fmt: skip
    assert (row.status_code, row.outcome, row.error_class, row.error_message,
            row.idempotency_key, row.request_body, row.response_body) == (
        None, "retryable", "timeout", "no answer within the timeout (ReadTimeout)",
        "ORD-000002:erp:1", '{"externalId": "ORD-000002"}', "",
    )  # fmt: skip
    assert len(remote.received) == 1


@pytest.mark.django_db(transaction=True)
def test_connection_refused_is_retryable_and_recorded(settings, refused_port):
    # given
    settings.TANDEM_CONNECTORS = {"tax": {"base_url": f"http://127.0.0.1:{refused_port}/tax/"}}
    # when
    with pytest.raises(RetryableError) as raised:
        Transport.for_system("tax").call(operation="quote_tax", method="POST", path="quotes",
                                         json={"amount": "10.00"})  # fmt: skip
    # then
    row = OutboundCall.objects.get()
    assert (raised.value.kind, raised.value.outbound_call_id) == ("connection_error", row.pk)
    assert (row.system, row.path, row.status_code, row.outcome, row.error_class,
            row.error_message) == (
        "tax", "/tax/quotes", None, "retryable", "connection_error",
        "connection failed (ConnectionError)",
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_call_inside_a_transaction_is_refused_before_any_io(remote, erp_connector):
    # given
    transport = Transport.for_system("erp")
    # when
    with transaction.atomic(), pytest.raises(CallInsideTransaction) as raised:
        transport.call(operation="sales_order_create", method="POST", path="sales-orders")
    # then
    assert str(raised.value) == (
        "erp.sales_order_create: outbound calls must not run inside a database transaction"
    )
    assert remote.received == []
    assert OutboundCall.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_bodies_are_capped_with_a_marker(remote, erp_connector, settings):
    # given
    settings.OUTBOUND_BODY_MAX_BYTES = 1024
    remote.respond(200, text="x" * 5000)
    big_request = {"note": "y" * 3000}
    # when
    Transport.for_system("erp").call(operation="note_add", method="POST", path="notes",
                                     json=big_request)  # fmt: skip
    # then
    row = OutboundCall.objects.get()
    response_marker = "…[truncated, 5000 bytes]"
    request_marker = "…[truncated, 3012 bytes]"
    assert row.response_body == "x" * (1024 - len(response_marker.encode())) + response_marker
    assert row.request_body == (
        '{"note": "' + "y" * (1024 - len(request_marker.encode()) - 10) + request_marker
    )
    assert len(row.response_body.encode()) == 1024
    assert len(row.request_body.encode()) == 1024


@pytest.mark.django_db(transaction=True)
def test_every_log_line_of_a_call_carries_the_correlation_id_and_no_body(remote, erp_connector):
    # given
    remote.respond(200, json_body={"ok": True, "email": "ap@northwind.example"})
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.addFilter(CorrelationIdFilter())
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # when
    try:
        with correlation("ORD-000077"):
            Transport.for_system("erp").call(operation="customer_upsert", method="PUT",
                                             path="customers/ACC-1", json=ORDER_BODY)  # fmt: skip
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    # then
    call_records = [r for r in records if r.name.startswith(("orchestration", "urllib3"))]
    assert [r.getMessage() for r in call_records if r.name.startswith("orchestration")] == [
        "outbound call erp.customer_upsert started",
        "outbound call erp.customer_upsert answered 200",
    ]
    assert any(r.name.startswith("urllib3") for r in call_records)
    assert {r.correlation_id for r in call_records} == {"ORD-000077"}  # type: ignore[attr-defined]
    logged = " ".join(r.getMessage() + repr(r.__dict__) for r in call_records)
    for secret in ("northwind.example", "4242424242424242", "leaked-key", "sk_test_erp_123"):
        assert secret not in logged
    assert OutboundCall.objects.get().correlation_id == "ORD-000077"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://169.254.169.254/latest/", "connector URL 'http://169.254.169.254/latest/': "
         "169.254.169.254 is a link-local, multicast or unspecified address"),
        ("http://10.0.0.5/erp/", "connector URL 'http://10.0.0.5/erp/': host '10.0.0.5' is not "
         "in CONNECTOR_ALLOWED_HOSTS"),
        ("http://192.168.1.20:8100/erp/", "connector URL 'http://192.168.1.20:8100/erp/': host "
         "'192.168.1.20' is not in CONNECTOR_ALLOWED_HOSTS"),
        ("http://erp.internal.example/", "connector URL 'http://erp.internal.example/': host "
         "'erp.internal.example' is not in CONNECTOR_ALLOWED_HOSTS"),
        ("http://127.0.0.1.evil.example/", "connector URL 'http://127.0.0.1.evil.example/': host "
         "'127.0.0.1.evil.example' is not in CONNECTOR_ALLOWED_HOSTS"),
        ("http://2130706433/", "connector URL 'http://2130706433/': host '2130706433' is not in "
         "CONNECTOR_ALLOWED_HOSTS"),
        ("ftp://127.0.0.1/erp/", "connector URL 'ftp://127.0.0.1/erp/': scheme 'ftp' is not "
         "http or https"),
        ("file:///etc/passwd", "connector URL 'file:///etc/passwd': scheme 'file' is not http "
         "or https"),
        ("http://admin:pw@127.0.0.1/erp/", "connector URL for host '127.0.0.1' must not carry "
         "credentials"),
    ],
)  # fmt: skip
def test_base_urls_off_the_allow_list_are_refused_before_any_request(settings, base_url,
                                                                     message):  # fmt: skip
    # given
    settings.TANDEM_CONNECTORS = {"erp": {"base_url": base_url}}
    # when
    with pytest.raises(ConnectorConfigurationError) as raised:
        Transport.for_system("erp")
    # then
    assert str(raised.value) == message
    assert OutboundCall.objects.count() == 0
    assert connectors_check() == [Error(message, id="orchestration.E001", obj="connector erp")]


def test_link_local_is_refused_even_when_allow_listed(settings):
    # given
    settings.CONNECTOR_ALLOWED_HOSTS = ["127.0.0.1", "169.254.169.254"]
    config = ConnectorConfig(system="erp", base_url="http://169.254.169.254/erp/")
    # when
    with pytest.raises(ConnectorConfigurationError) as raised:
        Transport(config)
    # then
    assert str(raised.value) == (
        "connector URL 'http://169.254.169.254/erp/': 169.254.169.254 is a link-local, "
        "multicast or unspecified address"
    )


def test_a_listed_private_host_is_allowed(settings):
    # given
    settings.CONNECTOR_ALLOWED_HOSTS = ["10.20.0.7"]
    settings.TANDEM_CONNECTORS = {"erp": {"base_url": "https://10.20.0.7:8443/erp/"}}
    # when
    transport = Transport.for_system("erp")
    # then
    assert transport.url_for("sales-orders") == "https://10.20.0.7:8443/erp/sales-orders"


def test_a_path_cannot_leave_the_configured_host(settings):
    # given
    transport = Transport.for_system("erp")
    # when / then
    assert transport.url_for("/@evil.example/x") == "http://127.0.0.1:8100/erp/@evil.example/x"
    assert transport.url_for("//evil.example/x") == "http://127.0.0.1:8100/erp/evil.example/x"


def test_credentials_are_read_from_the_named_variable_or_its_file(monkeypatch, tmp_path):
    # given
    config = ConnectorConfig(system="billing", base_url="http://127.0.0.1:8100/billing/",
                             credential_env="CONNECTOR_BILLING_API_KEY")  # fmt: skip
    secret_file = tmp_path / "billing_key"
    secret_file.write_text("sk_from_file\n")
    # when
    monkeypatch.delenv("CONNECTOR_BILLING_API_KEY", raising=False)
    monkeypatch.delenv("CONNECTOR_BILLING_API_KEY_FILE", raising=False)
    without = config.auth_headers()
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", "sk_from_env")
    from_env = config.auth_headers()
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY_FILE", str(secret_file))
    from_file = config.auth_headers()
    # then
    assert without == {}
    assert from_env == {"Authorization": "Bearer sk_from_env"}
    assert from_file == {"Authorization": "Bearer sk_from_file"}
    assert "sk_" not in repr(config)
