"""What the merge tests share: a pair of accounts with one of every kind of reference."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from core.audit import Actor, audit_context
from core.money import Money
from core.problems import CATEGORY_SLA, Category, Severity, Team
from exceptions.models import OperationalException
from masterdata.models import Account, AccountAlias, ExternalId
from masterdata.selectors import account_reference_fields
from masterdata.services import records as md
from q2c import services
from tests import factories
from tests.q2c import helpers as q2c_helpers


@dataclass
class World:
    survivor: Account
    loser: Account
    records: list[Any]


def steward(make_user: Any, name: str = "stella") -> Actor:
    return Actor.person(make_user(name, role="data_steward"))


def link(account: Account, system: str, external_id: str) -> ExternalId:
    return md.external_id_link(
        record=account, system=system, object_type="account", external_id=external_id,
        actor=factories.actor(), reason="seen in " + system,
    )  # fmt: skip


def ambiguity_exception(*candidates: str) -> OperationalException:
    now = timezone.now()
    with audit_context(actor=factories.actor(), reason="test setup"):
        return OperationalException.objects.create(
            category=Category.MASTER_DATA, severity=Severity.HIGH, owner_team=Team.DATA_STEWARD,
            message="matches several accounts", context={"candidates": list(candidates)},
            fingerprint="x", created_at=now, sla_due_at=now + CATEGORY_SLA[Category.MASTER_DATA],
        )  # fmt: skip


def account_with_everything(account: Account, crm_id: str) -> list[Any]:
    """Orders, a quote, a contract (with usage), an invoice, a credit note, a payment and a
    crosswalk entry, all on ``account``."""
    quote = q2c_helpers.quote(account=account)
    order = factories.order(account=account)
    contract = factories.contract(account=account)
    usage = q2c_helpers.usage_record(contract=contract)
    invoice = factories.invoice(account=account)
    credit = q2c_helpers.credit_note(invoice=invoice)
    payment = services.payment_record(
        account=account, amount=Money(Decimal("50.00"), account.currency),
        received_at=timezone.now() - dt.timedelta(days=1), actor=factories.actor(),
        reason="test setup",
    )  # fmt: skip
    crosswalk = link(account, "crm", crm_id)
    return [quote, order, contract, usage, invoice, credit, payment, crosswalk]


def world() -> World:
    entity = factories.legal_entity()
    survivor = factories.account(
        legal_name="Acme Systems Ltd", domain="acme.co.uk", legal_entity=entity,
        tax_id="GB123456789", postcode="EC1A 1BB",
    )  # fmt: skip
    loser = factories.account(
        legal_name="ACME Systems Limited", domain="", legal_entity=entity,
        tax_id="GB 123 456 789", postcode="EC1A 1BB", phone="+44 20 7946 0018",
    )  # fmt: skip
    records = account_with_everything(survivor, "001S") + account_with_everything(loser, "001L")
    return World(survivor=survivor, loser=loser, records=records)


def reference_snapshot() -> dict[str, Any]:
    """Where every reference to an account points: each account foreign key of each record,
    every crosswalk entry, every alias, every exception's candidate list."""
    snapshot: dict[str, Any] = {}
    for model, field in account_reference_fields():
        for pk, value in model._default_manager.values_list("pk", f"{field}_id"):
            snapshot[f"{model._meta.label}#{pk}.{field}"] = value
    for row in ExternalId.objects.values_list(
        "pk", "content_type_id", "object_id", "enterprise_id"
    ):
        snapshot[f"externalid#{row[0]}"] = row[1:]
    snapshot["aliases"] = sorted(AccountAlias.objects.values_list("alias", "account_id"))
    snapshot["exceptions"] = sorted(
        (exc.pk, tuple(exc.context.get("candidates") or []))
        for exc in OperationalException.objects.all()
    )
    snapshot["accounts"] = sorted(
        Account.objects.values_list("pk", "status", "merged_into_id", "legal_name", "phone")
    )
    return snapshot


def account_ct() -> ContentType:
    return ContentType.objects.get_for_model(Account)
