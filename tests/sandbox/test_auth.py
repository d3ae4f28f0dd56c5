from __future__ import annotations

import pytest

from sandbox.config import default_api_key


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
