from __future__ import annotations

import time
from collections import Counter

import pytest
import requests

from sandbox import SandboxConfig
from tests.sandbox.helpers import SandboxClient, sandbox_start

CUSTOMER = {"name": "Northwind", "metadata": {"tandem_order": "ORD-000001"}}


def test_faults_read_update_and_reset(sandbox):
    # when
    updated = sandbox.control("POST", "/faults/erp", {"latency_ms": 200, "error_rate": 0.25})
    read = sandbox.control("GET", "/faults/erp")
    reset = sandbox.control("DELETE", "/faults/erp")

    # then
    assert updated.status_code == 200
    assert read.json() == {
        "latency_ms": 200,
        "error_rate": 0.25,
        "throttle_rate": 0.0,
        "retry_after_s": 1,
        "lose_response_after_commit_rate": 0.0,
        "lose_response_hold_ms": 15000,
        "duplicate_webhook_rate": 0.0,
        "reorder_webhooks": False,
        "reorder_window_ms": 250,
    }
    assert reset.json()["latency_ms"] == 0
    assert reset.json()["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error_rate": 1.5}, "error_rate must be between 0 and 1, got 1.5"),
        ({"latency_ms": -1}, "latency_ms must be >= 0, got -1"),
        ({"reorder_webhooks": "yes"}, "reorder_webhooks must be true or false"),
        ({"jitter": 1}, None),
    ],
)
def test_invalid_fault_settings_are_refused(sandbox, body, message):
    # when
    response = sandbox.control("POST", "/faults/billing", body)

    # then
    assert response.status_code == 400
    if message is not None:
        assert response.json() == {"error": message}
    assert sandbox.control("GET", "/faults/billing").json()["error_rate"] == 0.0


def test_latency_is_added_to_every_call(sandbox):
    # given
    sandbox.control("POST", "/faults/crm", {"latency_ms": 300})

    # when
    started = time.monotonic()
    response = sandbox.get("crm", "/accounts")
    elapsed = time.monotonic() - started

    # then
    assert response.status_code == 200
    assert elapsed >= 0.3


def test_error_rate_one_answers_5xx_and_commits_nothing(sandbox):
    # given
    sandbox.control("POST", "/faults/billing", {"error_rate": 1})

    # when
    statuses = [sandbox.post("billing", "/customers", CUSTOMER).status_code for _ in range(6)]

    # then
    assert set(statuses) <= {500, 503}
    assert len(statuses) == 6
    sandbox.control("DELETE", "/faults/billing")
    assert sandbox.state("billing")["counts"]["customers"] == 0


def test_server_error_body_is_in_the_products_shape(sandbox):
    # given
    sandbox.control("POST", "/faults/billing", {"error_rate": 1})

    # when
    response = sandbox.get("billing", "/customers")

    # then
    assert response.json()["error"]["type"] == "api_error"
    assert response.json()["error"]["code"] == "api_error"


def test_throttle_answers_429_with_retry_after(sandbox):
    # given
    sandbox.control("POST", "/faults/erp", {"throttle_rate": 1, "retry_after_s": 3})

    # when
    response = sandbox.post("erp", "/customers", {"companyName": "Acme"})

    # then
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    sandbox.control("DELETE", "/faults/erp")
    assert sandbox.state("erp")["counts"]["customers"] == 0


def test_lost_response_after_commit_times_out_but_the_record_exists(sandbox):
    # given
    sandbox.control(
        "POST",
        "/faults/billing",
        {"lose_response_after_commit_rate": 1, "lose_response_hold_ms": 2000},
    )

    # when
    with pytest.raises(requests.exceptions.ReadTimeout):
        sandbox.post("billing", "/customers", CUSTOMER, key="c-1", timeout=(2, 0.5))

    # then
    [customer] = sandbox.state("billing")["records"]["customers"]
    assert customer["metadata"] == {"tandem_order": "ORD-000001"}
    sandbox.control("DELETE", "/faults/billing")
    found = sandbox.get("billing", "/customers", params={"metadata[tandem_order]": "ORD-000001"})
    assert [c["id"] for c in found.json()["data"]] == [customer["id"]]


def test_lost_response_with_no_hold_drops_the_connection_and_a_retry_replays(sandbox):
    # given
    sandbox.control(
        "POST", "/faults/erp", {"lose_response_after_commit_rate": 1, "lose_response_hold_ms": 0}
    )

    # when
    with pytest.raises(requests.exceptions.ConnectionError):
        sandbox.post("erp", "/customers", {"companyName": "Acme"}, key="erp-c-1")
    sandbox.control("DELETE", "/faults/erp")
    retried = sandbox.post("erp", "/customers", {"companyName": "Acme"}, key="erp-c-1")

    # then
    [customer] = sandbox.state("erp")["records"]["customers"]
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == customer


def test_lost_responses_spare_reads(sandbox):
    # given
    sandbox.control("POST", "/faults/crm", {"lose_response_after_commit_rate": 1})

    # when
    response = sandbox.get("crm", "/accounts")

    # then
    assert response.status_code == 200


def _statuses(seed: int) -> list[int]:
    server = sandbox_start(SandboxConfig(seed=seed, webhook_url=None))
    client = SandboxClient(server)
    try:
        client.control("POST", "/faults/crm", {"error_rate": 0.5, "throttle_rate": 0.2})
        return [client.get("crm", "/accounts").status_code for _ in range(30)]
    finally:
        server.stop()


def test_the_same_seed_injects_the_same_faults():
    # when
    first, second = _statuses(11), _statuses(11)

    # then
    assert first == second
    assert Counter(first) == {200: 17, 429: 6, 503: 4, 500: 3}
