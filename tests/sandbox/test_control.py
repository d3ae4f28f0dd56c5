from __future__ import annotations

from core.records import SYSTEMS as TANDEM_SYSTEMS
from sandbox.config import SYSTEMS
from sandbox.ids import salesforce_checksum
from tests.sandbox.helpers import billing_customer, crm_account


def test_sandbox_serves_every_system_tandem_knows():
    # then
    assert sorted(SYSTEMS) == sorted(TANDEM_SYSTEMS)


def test_salesforce_checksum_matches_salesforce():
    # then
    assert salesforce_checksum("001A0000006Vm9r") == "IAC"
    assert salesforce_checksum("a0D30000001n7Pi") == "EAI"


def test_health_needs_no_key(sandbox):
    # when
    response = sandbox.control("GET", "/health")

    # then
    assert response.json() == {"status": "ok", "systems": list(SYSTEMS)}


def test_state_counts_and_dump(sandbox):
    # given
    account_id = crm_account(sandbox)
    billing_customer(sandbox)

    # when
    counts = sandbox.control("GET", "/state").json()
    dump = sandbox.state("crm")

    # then
    assert counts == {
        "crm": {"accounts": 1},
        "cpq": {"quotes": 0, "products": 0, "contract_changes": 0},
        "billing": {
            "customers": 1,
            "products": 0,
            "prices": 0,
            "subscriptions": 0,
            "invoices": 0,
            "charges": 0,
            "refunds": 0,
            "credit_notes": 0,
            "usage_records": 0,
        },
        "erp": {
            "customers": 0,
            "salesorders": 0,
            "invoices": 0,
            "items": 0,
            "creditmemos": 0,
            "customerpayments": 0,
            "customerrefunds": 0,
            "returnauthorizations": 0,
        },
        "tax": {"transactions": 0},
        "payments": {"payment_intents": 0},
        "webhooks": {"events": 0},
    }
    assert dump["system"] == "crm"
    assert dump["counts"] == {"accounts": 1}
    assert [account["Id"] for account in dump["records"]["accounts"]] == [account_id]


def test_reset_empties_state_faults_and_idempotency(sandbox):
    # given
    first = sandbox.post("billing", "/customers", {"name": "A"}, key="k")
    sandbox.control("POST", "/faults/crm", {"latency_ms": 50})

    # when
    response = sandbox.control("POST", "/reset")

    # then
    assert response.json() == {"reset": True}
    assert sandbox.state("billing")["counts"]["customers"] == 0
    assert sandbox.control("GET", "/faults/crm").json()["latency_ms"] == 0
    again = sandbox.post("billing", "/customers", {"name": "A"}, key="k")
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] == first.json()["id"]


def test_unknown_system_and_endpoint(sandbox):
    # when
    unknown_system = sandbox.http.get(f"{sandbox.url}/hr/people", timeout=5)
    unknown_state = sandbox.control("GET", "/state/hr")
    unknown_route = sandbox.get("billing", "/coupons")
    wrong_method = sandbox.call("DELETE", "billing", "/customers")

    # then
    assert unknown_system.status_code == 404
    assert unknown_state.status_code == 404
    assert unknown_route.status_code == 404
    assert unknown_route.json()["error"]["message"] == (
        "Unrecognized request URL (GET: /billing/coupons)."
    )
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, POST"


def test_invalid_json_is_refused_in_the_products_shape(sandbox):
    # when
    response = sandbox.http.post(
        f"{sandbox.url}/erp/customers",
        data=b"{not json",
        headers={"Authorization": "Bearer sk_sandbox_erp"},
        timeout=5,
    )

    # then
    assert response.status_code == 400
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_CONTENT"


def test_settings_validation(sandbox):
    # when
    bad_url = sandbox.control("POST", "/settings", {"webhook_url": "ftp://x"})
    bad_delay = sandbox.control("POST", "/settings", {"erp_approval_delay_s": -1})
    good = sandbox.control("POST", "/settings", {"erp_approval_delay_s": 1.5})

    # then
    assert bad_url.status_code == 400
    assert bad_delay.status_code == 400
    assert good.json()["erp_approval_delay_s"] == 1.5
