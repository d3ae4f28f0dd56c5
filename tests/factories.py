"""Factories that build canonical records through the services, so history is real."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import count
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.audit import Actor
from core.records import BillingPeriod, LineKind
from masterdata.models import Account, LegalEntity, Product
from masterdata.services import records as md
from q2c import services
from q2c.models import Contract, Invoice, Order

_seq = count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw")


def actor() -> Actor:
    return Actor.system("worker")


def legal_entity(**kw: Any) -> LegalEntity:
    n = next(_seq)
    values = {"code": f"LE{n}", "name": f"Tandem Demo {n} Ltd", "country": "GB", "currency": "GBP"}
    values.update(kw)
    return md.legal_entity_create(**values, actor=actor(), reason="test setup")


def account(**kw: Any) -> Account:
    n = next(_seq)
    entity = kw.pop("legal_entity", None) or legal_entity()
    values = {"legal_name": f"Customer {n} Ltd", "country": "GB", "currency": "GBP"}
    values.update(kw)
    return md.account_create(**values, legal_entity=entity, actor=actor(), reason="test setup")


def product(**kw: Any) -> Product:
    n = next(_seq)
    values = {
        "sku": f"SKU-{n}",
        "name": f"Product {n}",
        "kind": LineKind.RECURRING,
        "billing_period": BillingPeriod.MONTH,
    }
    values.update(kw)
    return md.product_create(**values, actor=actor(), reason="test setup")


def line(**kw: Any) -> services.LineInput:
    values: dict[str, Any] = {
        "product_code": "SKU-X",
        "kind": LineKind.RECURRING,
        "quantity": Decimal("10"),
        "unit_price": Decimal("25.00"),
        "billing_period": BillingPeriod.MONTH,
        "term_start": dt.date(2026, 1, 1),
        "term_end": dt.date(2026, 12, 31),
    }
    values.update(kw)
    return services.LineInput(**values)


def order(**kw: Any) -> Order:
    acc = kw.pop("account", None) or account()
    lines = kw.pop("lines", None) or [line()]
    return services.order_create(
        account=acc,
        legal_entity=kw.pop("legal_entity", None) or acc.legal_entity,
        currency=kw.pop("currency", acc.currency),
        lines=lines,
        actor=kw.pop("actor", None) or actor(),
        reason=kw.pop("reason", "test setup"),
        **kw,
    )


def contract(**kw: Any) -> Contract:
    acc = kw.pop("account", None) or account()
    return services.contract_create(
        account=acc,
        legal_entity=acc.legal_entity,
        currency=acc.currency,
        start_date=kw.pop("start_date", dt.date(2026, 1, 1)),
        end_date=kw.pop("end_date", dt.date(2026, 12, 31)),
        lines=kw.pop("lines", None) or [line()],
        actor=actor(),
        reason="test setup",
        **kw,
    )


def invoice(**kw: Any) -> Invoice:
    acc = kw.pop("account", None) or account()
    lines = kw.pop("lines", None) or [
        services.InvoiceLineInput(
            description="Subscription", quantity=Decimal("1"), unit_price=Decimal("100.00")
        )
    ]
    return services.invoice_create(
        account=acc,
        legal_entity=acc.legal_entity,
        currency=acc.currency,
        lines=lines,
        issue_date=timezone.localdate(),
        actor=actor(),
        reason="test setup",
        **kw,
    )
