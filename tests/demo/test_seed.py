from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count

from core.roles import ROLE_NAMES
from masterdata.models import Account, ExternalId, LegalEntity, Product, ProductMapping
from q2c.models import (
    Contract,
    ContractVersion,
    Invoice,
    Order,
    OrderLine,
    Payment,
    Quote,
)

DEMO_PASSWORD = "s3cret-demo"


def _seed(settings, monkeypatch, *, password: str) -> str:  # type: ignore[no-untyped-def]
    settings.TANDEM_DEMO_MODE = True
    monkeypatch.setenv("DEMO_PASSWORD", password)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _by_state(model) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(model.objects.values_list("state").annotate(n=Count("pk")).order_by("state"))


def _counts() -> dict[str, object]:
    user_model = get_user_model()
    return {
        "users": user_model.objects.count(),
        "memberships": user_model.groups.through.objects.count(),
        "legal_entities": LegalEntity.objects.count(),
        "accounts": Account.objects.count(),
        "external_ids": ExternalId.objects.count(),
        "products": Product.objects.count(),
        "mappings": ProductMapping.objects.count(),
        "quotes": _by_state(Quote),
        "orders": _by_state(Order),
        "order_lines": OrderLine.objects.count(),
        "contracts": _by_state(Contract),
        "versions": _by_state(ContractVersion),
        "invoices": _by_state(Invoice),
        "payments": _by_state(Payment),
        "order_history": Order.history.count(),
        "invoice_history": Invoice.history.count(),
    }


@pytest.mark.django_db
def test_seed_demo_creates_one_user_per_role_and_an_admin(settings, monkeypatch):
    # given
    expected = [(role, role) for role in ROLE_NAMES] + [("admin", "admin")]
    # when
    output = _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    # then
    users = {u.username: u for u in get_user_model().objects.filter(is_active=True)}
    assert sorted(users) == sorted(username for username, _ in expected)
    for role in ROLE_NAMES:
        assert [g.name for g in users[role].groups.all()] == [role]
        assert (users[role].is_staff, users[role].is_superuser) == (False, False)
        assert users[role].check_password(DEMO_PASSWORD)
    assert (users["admin"].is_staff, users["admin"].is_superuser) == (True, True)
    assert list(users["admin"].groups.all()) == []
    assert users["admin"].check_password(DEMO_PASSWORD)
    table = output.splitlines()[1:]
    assert table[0].split() == ["username", "role", "name", "password"]
    rows = [(line.split()[0], line.split()[1], line.split()[-1]) for line in table[2:]]
    assert rows == [(username, role, DEMO_PASSWORD) for username, role in expected]


@pytest.mark.django_db
def test_seed_demo_loads_the_dataset_in_every_state(settings, monkeypatch):
    # when
    output = _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    # then
    assert output.splitlines()[0] == "Demo dataset loaded."
    counts = _counts()
    assert counts["legal_entities"] == 3
    assert sorted(LegalEntity.objects.values_list("code", "country", "currency")) == [
        ("TANDEM-DE", "DE", "EUR"),
        ("TANDEM-GB", "GB", "GBP"),
        ("TANDEM-US", "US", "USD"),
    ]
    assert counts["accounts"] == 11  # 8 customers and 3 near-duplicates of them
    assert counts["external_ids"] == 27
    assert dict(
        ExternalId.objects.values_list("system").annotate(n=Count("pk")).order_by("system")
    ) == {"billing": 9, "crm": 9, "erp": 9}
    assert counts["products"] == 8
    assert dict(Product.objects.values_list("kind").annotate(n=Count("pk")).order_by("kind")) == {
        "one_time": 2,
        "recurring": 4,
        "usage": 2,
    }
    assert counts["mappings"] == 24
    assert counts["quotes"] == {"approved": 1, "converted": 5}
    assert counts["orders"] == {
        "accepted": 1,
        "active": 2,
        "cancelled": 1,
        "fulfilled": 2,
        "on_hold": 1,
        "provisioning": 1,
        "received": 4,
        "rejected": 1,
        "submitted_to_erp": 1,
        "validated": 1,
    }
    assert counts["contracts"] == {
        "active": 2,
        "cancelled": 1,
        "expired": 1,
        "pending_activation": 1,
    }
    assert counts["versions"] == {"active": 4, "pending": 1, "superseded": 2}
    assert sorted(ContractVersion.objects.values_list("kind", flat=True)) == [
        "amendment",
        "cancellation",
        "initial",
        "initial",
        "initial",
        "initial",
        "initial",
    ]
    assert counts["invoices"] == {
        "draft": 1,
        "paid": 2,
        "partially_paid": 1,
        "posted": 1,
        "void": 1,
    }
    assert counts["payments"] == {"applied": 3}


@pytest.mark.django_db
def test_seed_demo_writes_history_as_the_system_actor_with_the_demo_reason(settings, monkeypatch):
    # when
    _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    # then
    orders = list(Order.objects.all())
    assert len(orders) == 15
    for order in orders:
        rows = list(
            order.history.order_by("history_id").values_list(
                "history_type", "history_user__username", "history_change_reason"
            )
        )
        assert rows[0] == ("+", "system", "demo seed")
        assert {(user, reason) for _, user, reason in rows} == {("system", "demo seed")}
    for model in (Contract, Invoice, Payment, Quote, Account):
        actors = set(model.history.values_list("history_user__username", "history_change_reason"))
        assert actors == {("system", "demo seed")}


@pytest.mark.django_db
def test_seed_demo_twice_changes_no_counts(settings, monkeypatch):
    # given
    _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    before = _counts()
    # when
    output = _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    # then
    assert output.splitlines()[0] == "Demo dataset already present; nothing loaded."
    assert _counts() == before


@pytest.mark.django_db
def test_seed_demo_refuses_outside_demo_mode(settings):
    # given
    settings.DEBUG = False
    settings.TANDEM_DEMO_MODE = False
    # when
    with pytest.raises(CommandError) as refused:
        call_command("seed_demo", stdout=StringIO())
    # then
    assert str(refused.value) == (
        "seed_demo creates users with a known password; "
        "run it only with DEBUG=1 or TANDEM_DEMO_MODE=1"
    )
    assert get_user_model().objects.filter(username__in=[*ROLE_NAMES, "admin"]).count() == 0
    assert LegalEntity.objects.count() == 0


@pytest.mark.django_db
def test_seed_demo_back_dating_is_not_shown_as_edits_to_created_at(settings, monkeypatch):
    # when
    _seed(settings, monkeypatch, password=DEMO_PASSWORD)
    # then: no history row of a seeded record differs from the one before it in created_at,
    # and the records themselves are in the past (the dataset spans months)
    for model in (Order, Contract, Invoice, Quote):
        created = {}
        for row in model.history.order_by("history_id").values("id", "created_at"):
            assert created.setdefault(row["id"], row["created_at"]) == row["created_at"], (
                f"{model.__name__} {row['id']}: created_at edited in its history"
            )
    oldest = Order.objects.order_by("created_at").values_list("created_at", flat=True).first()
    newest = Order.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    assert newest - oldest > dt.timedelta(days=30)
