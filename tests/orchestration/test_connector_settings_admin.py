"""The admin's read-only page of the active connector configuration."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestration.connectors.selectors import ConnectorSetting, connector_settings

URL = "/admin/orchestration/circuitbreaker/connectors/"
STRIPE = "orchestration.connectors.stripe.billing.StripeBilling"


@pytest.fixture
def stripe_configured(settings, monkeypatch):
    settings.TANDEM_CONNECTOR_IMPLEMENTATIONS = {
        **settings.TANDEM_CONNECTOR_IMPLEMENTATIONS, "billing": STRIPE,
    }  # fmt: skip
    settings.TANDEM_CONNECTORS = {
        **settings.TANDEM_CONNECTORS,
        "billing": {**settings.TANDEM_CONNECTORS["billing"], "base_url": "http://localhost:8420"},
        "tax": {**settings.TANDEM_CONNECTORS["tax"], "base_url": "http://tax.example.com/"},
    }
    settings.WEBHOOK_SIGNATURE_BILLING = "stripe"
    monkeypatch.setenv("CONNECTOR_BILLING_API_KEY", "sk_test_visible_nowhere")
    monkeypatch.setenv("WEBHOOK_SECRET_BILLING", "whsec_current_nowhere")
    monkeypatch.setenv("WEBHOOK_SECRET_BILLING_PREVIOUS", "whsec_previous_nowhere")
    monkeypatch.delenv("CONNECTOR_TAX_API_KEY", raising=False)
    monkeypatch.delenv("WEBHOOK_SECRET_TAX", raising=False)
    monkeypatch.delenv("WEBHOOK_SECRET_TAX_PREVIOUS", raising=False)


def test_each_kind_shows_its_implementation_endpoint_and_which_secrets_are_set(
    stripe_configured,
):
    # when
    rows = {row.kind: row for row in connector_settings()}
    # then
    assert rows["billing"] == ConnectorSetting(
        kind="billing", implementation=STRIPE, base_url="http://localhost:8420", problem="",
        credential_env="CONNECTOR_BILLING_API_KEY", credential_set=True,
        webhook_scheme="stripe", webhook_secrets_set=2,
    )  # fmt: skip
    assert rows["tax"] == ConnectorSetting(
        kind="tax", implementation="orchestration.connectors.sandbox.tax.SandboxTax",
        base_url="http://tax.example.com/",
        problem="connector URL 'http://tax.example.com/': host 'tax.example.com' is not in "
        "CONNECTOR_ALLOWED_HOSTS",
        credential_env="CONNECTOR_TAX_API_KEY", credential_set=False, webhook_scheme="tandem",
        webhook_secrets_set=0,
    )  # fmt: skip
    assert list(rows) == ["crm", "cpq", "billing", "erp", "tax", "payments"]


@pytest.mark.django_db
def test_an_admin_sees_the_page_without_any_secret(admin_client, stripe_configured):
    # when
    response = admin_client.get(URL)
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert STRIPE in content
    assert "http://localhost:8420" in content
    assert "current and previous" in content
    for secret in ("sk_test_visible_nowhere", "whsec_current_nowhere", "whsec_previous_nowhere"):
        assert secret not in content


@pytest.mark.django_db
def test_staff_who_are_not_admins_are_refused_and_anonymous_users_sent_to_log_in(client):
    # given
    staff = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    # when
    anonymous = client.get(URL)
    client.force_login(staff)
    refused = client.get(URL)
    # then
    assert (anonymous.status_code, anonymous["Location"]) == (302, f"/admin/login/?next={URL}")
    assert refused.status_code == 403
