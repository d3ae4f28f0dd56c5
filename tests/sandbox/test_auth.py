from __future__ import annotations

import pytest

from sandbox.config import CONTROL_TOKEN_HEADER, default_api_key, default_control_token


def test_missing_authorization_is_a_401(sandbox):
    # when
    response = sandbox.http.get(f"{sandbox.url}/billing/customers", timeout=5)

    # then
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="sandbox"'
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "api_key_invalid",
            "message": "Invalid API Key provided: (none)",
        }
    }


@pytest.mark.parametrize(
    ("system", "path", "code"),
    [
        ("crm", "/accounts", "INVALID_SESSION_ID"),
        ("cpq", "/quotes", "INVALID_SESSION_ID"),
        ("erp", "/customers", "INVALID_LOGIN"),
        ("tax", "/companies/UK01/transactions/X", "AuthenticationException"),
        ("payments", "/payment_intents", "api_key_invalid"),
    ],
)
def test_another_systems_key_is_refused(sandbox, system, path, code):
    # when
    response = sandbox.get(system, path, token=default_api_key("billing"))

    # then
    assert response.status_code == 401
    body = response.json()
    found = {
        "crm": lambda: body[0]["errorCode"],
        "cpq": lambda: body[0]["errorCode"],
        "erp": lambda: body["o:errorDetails"][0]["o:errorCode"],
        "tax": lambda: body["error"]["code"],
        "payments": lambda: body["error"]["code"],
    }[system]()
    assert found == code


def test_a_refused_post_changes_nothing(sandbox):
    # when
    response = sandbox.post("crm", "/accounts", {"Name": "Acme"}, token="wrong-key-123456")

    # then
    assert response.status_code == 401
    assert response.json()[0]["message"] == "Session expired or invalid"
    assert sandbox.state("crm")["counts"] == {"accounts": 0}


def test_configured_keys_replace_the_defaults(receiver):
    # given
    from sandbox import SandboxConfig
    from sandbox.config import SYSTEMS
    from tests.sandbox.helpers import SandboxClient, sandbox_start

    server = sandbox_start(
        SandboxConfig(api_keys={s: f"key-{s}" for s in SYSTEMS}, webhook_url=None)
    )
    client = SandboxClient(server)
    try:
        # when
        default = client.get("crm", "/accounts")
        configured = client.get("crm", "/accounts", token="key-crm")
    finally:
        server.stop()

    # then
    assert default.status_code == 401
    assert configured.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/faults", None),
        ("POST", "/faults/erp", {"error_rate": 1.0}),
        ("POST", "/reset", None),
        ("GET", "/state/crm", None),
        ("POST", "/settings", {"webhook_url": "http://127.0.0.1:9/"}),
    ],
)
def test_the_control_api_refuses_a_call_without_its_token_and_changes_nothing(
    sandbox, method, path, body
):
    # given
    before = sandbox.control("GET", "/faults").json()
    # when
    missing = sandbox.http.request(method, f"{sandbox.url}/_control{path}", json=body, timeout=5)
    wrong = sandbox.http.request(
        method, f"{sandbox.url}/_control{path}", json=body, timeout=5,
        headers={CONTROL_TOKEN_HEADER: "ctl_guess"},
    )  # fmt: skip
    # then
    refusal = {"error": "the control API needs the X-Sandbox-Control-Token header"}
    assert (missing.status_code, missing.json()) == (401, refusal)
    assert (wrong.status_code, wrong.json()) == (401, refusal)
    assert sandbox.control("GET", "/faults").json() == before


def test_the_control_api_takes_the_configured_token_and_health_needs_none(receiver):
    # given
    from sandbox import SandboxConfig
    from tests.sandbox.helpers import SandboxClient, sandbox_start

    server = sandbox_start(SandboxConfig(control_token="ctl-configured", webhook_url=None))
    client = SandboxClient(server)
    try:
        # when
        faults = client.control("POST", "/faults/erp", {"error_rate": 0.5})
        default = client.http.get(
            f"{client.url}/_control/faults", timeout=5,
            headers={CONTROL_TOKEN_HEADER: default_control_token()},
        )  # fmt: skip
        health = client.http.get(f"{client.url}/_control/health", timeout=5)
    finally:
        server.stop()
    # then
    assert faults.status_code == 200
    assert default.status_code == 401
    assert health.status_code == 200
