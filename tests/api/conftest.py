from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from rest_framework.test import APIClient

from core.money import Money
from core.roles import roles_sync
from core.tokens import api_token_issue
from masterdata.services import records as md
from q2c import services
from tests import factories
from tests.console.audit.conftest import story  # noqa: F401  (one order's story, for audit tests)
from tests.q2c import helpers

ANONYMOUS = "anonymous"
NO_ROLE = "no role"
ADMIN = "admin"


def user_for(who: str) -> Any:
    """A fresh user acting as ``who`` (a role name, admin, no role, or anonymous)."""
    if who == ANONYMOUS:
        return AnonymousUser()
    users = get_user_model().objects
    if who == ADMIN:
        return users.create_superuser(username="admin-user", password="pw", email="a@example.com")
    user = users.create_user(username=f"user-{who.replace(' ', '-')}", password="pw")
    if who != NO_ROLE:
        if not Group.objects.filter(name=who).exists():
            # transaction=True tests flush the tables, groups from the migration included.
            roles_sync(apps)
        user.groups.add(Group.objects.get(name=who))
    return user


def token_client(user: Any) -> APIClient:
    """A client that authenticates with the user's API token, as an integration would."""
    client = APIClient()
    if user.is_authenticated:
        key = api_token_issue(user=user, rotate=True)
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def records(db: Any) -> dict[str, Any]:
    """One record of every kind the API serves, linked the way quote to cash links them."""
    actor = factories.actor()
    account = factories.account(domain="acme.example")
    md.external_id_link(
        record=account,
        system="crm",
        object_type="account",
        external_id="001CRM",
        actor=actor,
        reason="test setup",
    )
    product = factories.product(sku="SKU-X")
    md.product_map(
        product=product, system="billing", external_id="plan_x", actor=actor, reason="test setup"
    )
    quote = helpers.quote(account=account, cpq_quote_id="CPQ-Q-1")
    order = factories.order(account=account)
    contract = factories.contract(account=account, order=order)
    invoice = factories.invoice(account=account, order=order)
    services.invoice_post(invoice=invoice, actor=actor, reason="issued")
    credit_note = helpers.credit_note(invoice=invoice, amount=Decimal("10.00"))
    payment = services.payment_record(
        account=account,
        amount=Money(Decimal("40.00"), "GBP"),
        received_at=dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC),
        method="card",
        actor=actor,
        reason="test setup",
    )
    return {
        "account": account,
        "product": product,
        "quote": quote,
        "order": order,
        "contract": contract,
        "invoice": invoice,
        "credit_note": credit_note,
        "payment": payment,
    }
