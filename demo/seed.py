"""The demo: users for every role and a small, realistic quote-to-cash dataset.

Everything is written through the services, so the console's history pages show real rows:
the actor is the ``system`` system actor and the reason is ``demo seed``. Dates are relative to
the day the seed runs, so ages on the dashboard look like a working week rather than a
freshly loaded database. Seeding is idempotent: the demo legal entities are the marker, and a
second run only refreshes the demo users' passwords and groups.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models, transaction
from django.utils import timezone

from core.audit import Actor, audit_context
from core.money import Money
from core.records import BillingPeriod, LineKind
from core.roles import ROLE_NAMES
from core.transitions import transition_apply
from masterdata.models import Account, LegalEntity, Product
from masterdata.services import records as md
from q2c import services
from q2c.models import Contract, Invoice, Order, OrderState, Payment, Quote
from q2c.services import InvoiceLineInput, LineInput

DEMO_REASON = "demo seed"
DEMO_ACTOR = "system"
DEMO_DEFAULT_PASSWORD = "tandem-demo"  # noqa: S105 (the documented demo password)
ADMIN_USERNAME = "admin"

_CENT = Decimal("0.01")
_PRICE = Decimal("0.0001")
_PERIOD_MONTHS: dict[str, int] = {
    BillingPeriod.NONE: 1,
    BillingPeriod.MONTH: 1,
    BillingPeriod.QUARTER: 3,
    BillingPeriod.YEAR: 12,
}


# --- Users ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    full_name: str


DEMO_PEOPLE = {
    "sales_ops": ("Sofia", "Ramos"),
    "finance_ops": ("Felix", "Brandt"),
    "data_steward": ("Dana", "Okafor"),
    "integration_support": ("Ivan", "Petrov"),
    "auditor": ("Aisha", "Malik"),
    ADMIN_USERNAME: ("Alex", "Morgan"),
}


def demo_users_ensure(*, password: str) -> list[DemoUser]:
    """One active user per role (username = role name) plus a staff superuser ``admin``.

    Existing demo users are updated in place (password, flags, exactly their role's group),
    so the printed table is always true and a second run adds no rows.
    """
    if not password:
        raise ValueError("the demo password cannot be empty")
    user_model = get_user_model()
    result = []
    with transaction.atomic():
        for username in [*ROLE_NAMES, ADMIN_USERNAME]:
            first, last = DEMO_PEOPLE.get(username, (username.replace("_", " ").title(), ""))
            user, _ = user_model.objects.get_or_create(username=username)
            is_admin = username == ADMIN_USERNAME
            user.first_name = first
            user.last_name = last
            user.email = f"{username}@tandem.example"
            user.is_active = True
            user.is_staff = is_admin
            user.is_superuser = is_admin
            user.set_password(password)
            user.save()
            user.groups.set([] if is_admin else [Group.objects.get(name=username)])
            result.append(
                DemoUser(
                    username=username,
                    role=ADMIN_USERNAME if is_admin else username,
                    full_name=f"{first} {last}".strip(),
                )
            )
    return result


def demo_user_table(users: list[DemoUser], *, password: str) -> str:
    """A plain-text table of the demo sign-ins."""
    header = ("username", "role", "name", "password")
    rows = [(u.username, u.role, u.full_name, password) for u in users]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])


# --- Reference data -------------------------------------------------------------------------

LEGAL_ENTITIES = [
    # code, name, country, currency, ERP subsidiary, tax registration
    ("TANDEM-US", "Tandem Inc.", "US", "USD", "US01", "EIN 84-2910377"),
    ("TANDEM-GB", "Tandem Ltd", "GB", "GBP", "UK01", "GB 284 6120 93"),
    ("TANDEM-DE", "Tandem GmbH", "DE", "EUR", "DE01", "DE 318 440 927"),
]
DEMO_LEGAL_ENTITY_CODES = [row[0] for row in LEGAL_ENTITIES]

# key, legal entity, legal name, domain, tax id, address, city, postcode, region, CRM/ERP/billing
ACCOUNTS: list[dict[str, str]] = [
    {
        "key": "brightwater", "entity": "TANDEM-US",
        "legal_name": "Brightwater Analytics, Inc.", "domain": "brightwater-analytics.com",
        "tax_id": "47-3816290", "address_line1": "500 Howard Street, Suite 400",
        "city": "San Francisco", "postcode": "94105", "region": "CA",
        "phone": "+1 415 555 0142", "email": "ap@brightwater-analytics.com",
        "crm": "001Hs00003BWA01QAF", "erp": "C-100412", "billing": "cus_Pq3RbW7zK1aLmE",
    },
    {
        "key": "harbor", "entity": "TANDEM-US",
        "legal_name": "Harbor & Pine Outfitters LLC", "domain": "harborandpine.com",
        "tax_id": "82-1057734", "address_line1": "120 Commercial Street",
        "city": "Portland", "postcode": "04101", "region": "ME",
        "phone": "+1 207 555 0187", "email": "billing@harborandpine.com",
        "crm": "001Hs00003HPO02QAF", "erp": "C-100418", "billing": "cus_Pq3S4nV9hT2cXo",
    },
    {
        "key": "kestrel", "entity": "TANDEM-US",
        "legal_name": "Kestrel Freight Systems Corp.", "domain": "kestrelfreight.com",
        "tax_id": "36-4471925", "address_line1": "233 South Wacker Drive, Floor 38",
        "city": "Chicago", "postcode": "60606", "region": "IL",
        "phone": "+1 312 555 0119", "email": "payables@kestrelfreight.com",
        "crm": "001Hs00003KFS03QAF", "erp": "C-100427", "billing": "cus_Pq3TgY2mW8dRsB",
    },
    {
        "key": "alder", "entity": "TANDEM-GB",
        "legal_name": "Alder & Finch Ltd", "domain": "alderfinch.co.uk",
        "tax_id": "GB 293 5817 46", "address_line1": "14 Finsbury Circus",
        "city": "London", "postcode": "EC2M 7EB", "region": "Greater London",
        "phone": "+44 20 7946 0321", "email": "accounts@alderfinch.co.uk",
        "crm": "001Hs00003AFL04QAF", "erp": "C-200133", "billing": "cus_Pq3UaZ5kQ3eNtC",
    },
    {
        "key": "thistle", "entity": "TANDEM-GB",
        "legal_name": "Thistle Health Systems Ltd", "domain": "thistlehealth.co.uk",
        "tax_id": "GB 318 2260 11", "address_line1": "42 George Street",
        "city": "Edinburgh", "postcode": "EH2 2LE", "region": "Scotland",
        "phone": "+44 131 496 0755", "email": "finance@thistlehealth.co.uk",
        "crm": "001Hs00003THS05QAF", "erp": "C-200141", "billing": "cus_Pq3VbX6jR4fPuD",
    },
    {
        "key": "meridian", "entity": "TANDEM-GB",
        "legal_name": "Meridian Cloudworks plc", "domain": "meridiancloudworks.com",
        "tax_id": "GB 402 7719 85", "address_line1": "1 Spinningfields, Quay Street",
        "city": "Manchester", "postcode": "M3 3JE", "region": "Greater Manchester",
        "phone": "+44 161 496 0218", "email": "ap@meridiancloudworks.com",
        "crm": "001Hs00003MCW06QAF", "erp": "C-200158", "billing": "cus_Pq3WcY7iS5gQvE",
    },
    {
        "key": "nordlicht", "entity": "TANDEM-DE",
        "legal_name": "Nordlicht Maschinenbau GmbH", "domain": "nordlicht-maschinenbau.de",
        "tax_id": "DE 812 457 390", "address_line1": "Hafenstraße 12",
        "city": "Hamburg", "postcode": "20457", "region": "Hamburg",
        "phone": "+49 40 5550 1234", "email": "buchhaltung@nordlicht-maschinenbau.de",
        "crm": "001Hs00003NLM07QAF", "erp": "C-300077", "billing": "cus_Pq3XdZ8hT6hRwF",
    },
    {
        "key": "isarwerk", "entity": "TANDEM-DE",
        "legal_name": "Isarwerk Software AG", "domain": "isarwerk.de",
        "tax_id": "DE 296 118 054", "address_line1": "Leopoldstraße 88",
        "city": "München", "postcode": "80802", "region": "Bayern",
        "phone": "+49 89 5550 8800", "email": "rechnungen@isarwerk.de",
        "crm": "001Hs00003ISW08QAF", "erp": "C-300081", "billing": "cus_Pq3YeA9gU7iSxG",
    },
]  # fmt: skip

# sku, name, kind, billing period, list price per currency, CPQ/ERP/billing ids
PRODUCTS: list[dict[str, Any]] = [
    {
        "sku": "TDM-PLAT-MO", "name": "Tandem Platform seat, monthly",
        "kind": LineKind.RECURRING, "period": BillingPeriod.MONTH,
        "price": {"USD": "45.00", "GBP": "36.00", "EUR": "42.00"},
        "cpq": "01tHs000007PLTMOAA", "erp": "ITM-1001", "billing": "plan_platform_monthly",
    },
    {
        "sku": "TDM-PLAT-YR", "name": "Tandem Platform seat, annual",
        "kind": LineKind.RECURRING, "period": BillingPeriod.YEAR,
        "price": {"USD": "480.00", "GBP": "384.00", "EUR": "444.00"},
        "cpq": "01tHs000007PLTYRAA", "erp": "ITM-1002", "billing": "plan_platform_annual",
    },
    {
        "sku": "TDM-SUP-PREM", "name": "Premium Support, annual",
        "kind": LineKind.RECURRING, "period": BillingPeriod.YEAR,
        "price": {"USD": "6000.00", "GBP": "4800.00", "EUR": "5500.00"},
        "cpq": "01tHs000007SUPPRAA", "erp": "ITM-1010", "billing": "plan_support_premium",
    },
    {
        "sku": "TDM-CONN-ERP", "name": "ERP Connector Pack, quarterly",
        "kind": LineKind.RECURRING, "period": BillingPeriod.QUARTER,
        "price": {"USD": "1500.00", "GBP": "1200.00", "EUR": "1380.00"},
        "cpq": "01tHs000007CNERPAA", "erp": "ITM-1020", "billing": "plan_connector_erp",
    },
    {
        "sku": "TDM-ONBOARD", "name": "Onboarding and implementation",
        "kind": LineKind.ONE_TIME, "period": BillingPeriod.NONE,
        "price": {"USD": "12500.00", "GBP": "9900.00", "EUR": "11500.00"},
        "cpq": "01tHs000007ONBRDAA", "erp": "ITM-2001", "billing": "charge_onboarding",
    },
    {
        "sku": "TDM-TRAIN-DAY", "name": "Administrator training, one day",
        "kind": LineKind.ONE_TIME, "period": BillingPeriod.NONE,
        "price": {"USD": "2400.00", "GBP": "1900.00", "EUR": "2200.00"},
        "cpq": "01tHs000007TRNDYAA", "erp": "ITM-2005", "billing": "charge_training_day",
    },
    {
        "sku": "TDM-API-1K", "name": "API calls, per 1,000",
        "kind": LineKind.USAGE, "period": BillingPeriod.MONTH,
        "price": {"USD": "0.80", "GBP": "0.65", "EUR": "0.75"},
        "cpq": "01tHs000007API1KAA", "erp": "ITM-3001", "billing": "metered_api_calls",
    },
    {
        "sku": "TDM-ARCH-GB", "name": "Archive storage, per GB-month",
        "kind": LineKind.USAGE, "period": BillingPeriod.MONTH,
        "price": {"USD": "0.12", "GBP": "0.10", "EUR": "0.11"},
        "cpq": "01tHs000007ARCGBAA", "erp": "ITM-3002", "billing": "metered_archive_storage",
    },
]  # fmt: skip

_EXTERNAL_KIND: dict[str, dict[str, str]] = {
    "cpq": {LineKind.RECURRING: "product", LineKind.ONE_TIME: "product", LineKind.USAGE: "product"},
    "erp": {LineKind.RECURRING: "item", LineKind.ONE_TIME: "item", LineKind.USAGE: "item"},
    "billing": {LineKind.RECURRING: "plan", LineKind.ONE_TIME: "charge", LineKind.USAGE: "metered"},
}
TAX_RATES = {"US": Decimal("0"), "GB": Decimal("0.20"), "DE": Decimal("0.19")}


# --- The dataset ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSeedResult:
    users: list[DemoUser]
    data_created: bool


class DemoDataConflict(Exception):
    """Some, but not all, demo legal entities exist: the database holds other data."""


def demo_data_present() -> bool:
    """Whether the demo dataset was loaded (all demo legal entity codes exist)."""
    found = LegalEntity.objects.filter(code__in=DEMO_LEGAL_ENTITY_CODES).count()
    if found and found != len(DEMO_LEGAL_ENTITY_CODES):
        raise DemoDataConflict(
            f"{found} of the demo legal entities {', '.join(DEMO_LEGAL_ENTITY_CODES)} exist; "
            "the demo seed only runs on an empty database or one it seeded itself"
        )
    return found == len(DEMO_LEGAL_ENTITY_CODES)


def demo_seed(*, password: str, now: dt.datetime | None = None) -> DemoSeedResult:
    """Ensure the demo users, then load the demo dataset unless it is already there."""
    users = demo_users_ensure(password=password)
    with transaction.atomic():
        if demo_data_present():
            return DemoSeedResult(users=users, data_created=False)
        _Loader(now=now or timezone.now()).load()
    return DemoSeedResult(users=users, data_created=True)


@dataclass(frozen=True)
class _Deal:
    """A seeded order with its contract, and the day its subscription started."""

    order: Order
    contract: Contract
    start: dt.date


class _Loader:
    """Builds the dataset in one transaction; every write goes through a service."""

    def __init__(self, *, now: dt.datetime) -> None:
        self.now = now
        self.today = timezone.localdate(now)
        self.actor = Actor.system(DEMO_ACTOR)
        self.entities: dict[str, LegalEntity] = {}
        self.accounts: dict[str, Account] = {}
        self.products: dict[str, Product] = {}
        self._invoice_no = 4810

    # time helpers: "n days ago" as a moment (before now) and as a date
    def ago(self, days: float, hours: float = 0) -> dt.datetime:
        """The moment ``days`` days and ``hours`` hours before the seed's now."""
        return self.now - dt.timedelta(days=days, hours=hours)

    def day(self, offset_days: int) -> dt.date:
        """The date ``offset_days`` from the seed's today (negative: in the past)."""
        return self.today + dt.timedelta(days=offset_days)

    def load(self) -> None:
        """Load the whole dataset, every write attributed to the demo actor and reason."""
        with audit_context(actor=self.actor, reason=DEMO_REASON):
            self._reference_data()
            self._orders_contracts_invoices()

    # --- master data ------------------------------------------------------------------------

    def _reference_data(self) -> None:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        for code, name, country, currency, subsidiary, tax_registration in LEGAL_ENTITIES:
            self.entities[code] = md.legal_entity_create(
                code=code,
                name=name,
                country=country,
                currency=currency,
                erp_subsidiary=subsidiary,
                tax_registration=tax_registration,
                **kw,
            )
        detail_fields = (
            "domain", "tax_id", "address_line1", "city", "postcode", "region", "phone", "email",
        )  # fmt: skip
        for row in ACCOUNTS:
            entity = self.entities[row["entity"]]
            account = md.account_create(
                legal_name=row["legal_name"],
                country=entity.country,
                currency=entity.currency,
                legal_entity=entity,
                actor=self.actor,
                reason=DEMO_REASON,
                **{name: row[name] for name in detail_fields},
            )
            for system in ("crm", "erp", "billing"):
                md.external_id_link(
                    record=account,
                    system=system,
                    object_type="account",
                    external_id=row[system],
                    **kw,
                )
            self.accounts[row["key"]] = account
        for row in PRODUCTS:
            product = md.product_create(
                sku=row["sku"],
                name=row["name"],
                kind=row["kind"],
                billing_period=row["period"],
                **kw,
            )
            for system in ("cpq", "erp", "billing"):
                md.product_map(
                    product=product,
                    system=system,
                    external_id=row[system],
                    external_kind=_EXTERNAL_KIND[system][row["kind"]],
                    **kw,
                )
            self.products[row["sku"]] = product

    def line(
        self,
        sku: str,
        quantity: str,
        *,
        currency: str,
        start: dt.date | None = None,
        months: int = 12,
        discount: str = "0",
    ) -> LineInput:
        """A line of ``sku`` at its catalog price in ``currency``; a recurring or usage line runs
        ``months`` months from ``start``.
        """
        product = self.products[sku]
        price = next(row["price"][currency] for row in PRODUCTS if row["sku"] == sku)
        recurring = product.kind != LineKind.ONE_TIME
        return LineInput(
            product_code=sku,
            product=product,
            kind=product.kind,
            quantity=Decimal(quantity),
            unit_price=Decimal(price),
            discount_percent=Decimal(discount),
            billing_period=product.billing_period,
            term_start=start if recurring else None,
            term_end=_term_end(start, months) if recurring and start else None,
        )

    # --- orders -----------------------------------------------------------------------------

    def _order(
        self,
        account_key: str,
        lines: list[LineInput],
        *,
        cpq_quote_id: str | None = None,
        created_days_ago: float,
    ) -> Order:
        account = self.accounts[account_key]
        entity = account.legal_entity
        assert entity is not None
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        if cpq_quote_id is None:
            order = services.order_create(
                account=account,
                legal_entity=entity,
                currency=account.currency,
                lines=lines,
                **kw,
            )
        else:
            approved_at = self.ago(created_days_ago, hours=3)
            quote = services.quote_create(
                cpq_quote_id=cpq_quote_id,
                account=account,
                legal_entity=entity,
                currency=account.currency,
                approved_at=approved_at,
                valid_until=approved_at.date() + dt.timedelta(days=30),
                lines=lines,
                **kw,
            )
            order = services.quote_convert_to_order(quote=quote, **kw)
            _backdate(
                quote,
                created_at=approved_at,
                state_changed_at=self.ago(created_days_ago),
            )
        return order

    def _advance(self, order: Order, *, to: str, days_ago: list[float]) -> dict[str, dt.datetime]:
        """Walk the happy path up to state ``to``; ``days_ago`` dates each step taken.

        Returns the timestamps the steps should carry, for ``_backdate``.
        """
        path = [
            (OrderState.VALIDATED, services.order_validate),
            (OrderState.SUBMITTED_TO_ERP, services.order_submit_to_erp),
            (OrderState.ACCEPTED, services.order_accept),
            (OrderState.PROVISIONING, services.order_start_provisioning),
            (OrderState.ACTIVE, services.order_activate),
            (OrderState.FULFILLED, services.order_fulfil),
        ]
        moments: dict[str, dt.datetime] = {}
        for steps, (state, step) in enumerate(path):
            if order.state == to:
                break
            moment = self.ago(days_ago[steps])
            if state == OrderState.ACCEPTED:
                services.order_accept(
                    order=order, actor=self.actor, reason=DEMO_REASON, accepted_at=moment
                )
            else:
                step(order=order, actor=self.actor, reason=DEMO_REASON)
            if state == OrderState.ACTIVE:
                moments["activated_at"] = moment
            moments["state_changed_at"] = moment
        if order.state != to:
            raise ValueError(f"{order} cannot reach {to} on the happy path")
        return moments

    def _orders_contracts_invoices(self) -> None:
        """Orders in every state, the contracts of the ones that got that far, their invoices."""
        self._orders_received_and_validated()
        self._orders_at_the_erp()
        self._order_provisioning()
        amended = self._deal_amended()
        active = self._deal_active()
        expired = self._deal_expired()
        cancelled = self._deal_cancelled()
        self._orders_stopped()
        self._quote_open()
        self._invoices_and_payments(
            amended=amended, active=active, expired=expired, cancelled=cancelled
        )

    def _orders_received_and_validated(self) -> None:
        d = self.day

        # received two hours ago, straight from CPQ: nothing has touched it yet
        o_received = self._order(
            "kestrel",
            [
                self.line("TDM-PLAT-YR", "60", currency="USD", start=d(14)),
                self.line("TDM-ONBOARD", "1", currency="USD"),
            ],
            cpq_quote_id="Q-2025-00918",
            created_days_ago=2 / 24,
        )
        _backdate(o_received, created_at=self.ago(0, hours=2), state_changed_at=self.ago(0, 2))

        # validated yesterday, waiting for the ERP submission
        o_validated = self._order(
            "thistle",
            [self.line("TDM-PLAT-MO", "35", currency="GBP", start=d(7))],
            created_days_ago=1.2,
        )
        _backdate(
            o_validated,
            created_at=self.ago(1.2),
            **self._advance(o_validated, to=OrderState.VALIDATED, days_ago=[1]),
        )

    def _orders_at_the_erp(self) -> None:
        d = self.day

        # submitted to ERP three days ago and still not accepted: a stuck order
        o_submitted = self._order(
            "isarwerk",
            [
                self.line("TDM-PLAT-YR", "120", currency="EUR", start=d(3), discount="10"),
                self.line("TDM-CONN-ERP", "1", currency="EUR", start=d(3)),
                self.line("TDM-API-1K", "500", currency="EUR", start=d(3)),
            ],
            cpq_quote_id="Q-2025-00902",
            created_days_ago=3.4,
        )
        _backdate(
            o_submitted,
            created_at=self.ago(3.4),
            **self._advance(o_submitted, to=OrderState.SUBMITTED_TO_ERP, days_ago=[3.3, 3.2]),
        )

        # financially accepted, provisioning not started
        o_accepted = self._order(
            "harbor",
            [
                self.line("TDM-PLAT-MO", "18", currency="USD", start=d(1)),
                self.line("TDM-TRAIN-DAY", "1", currency="USD"),
            ],
            created_days_ago=5,
        )
        _backdate(
            o_accepted,
            created_at=self.ago(5),
            **self._advance(o_accepted, to=OrderState.ACCEPTED, days_ago=[4.9, 4.8, 2]),
        )

    def _order_provisioning(self) -> None:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # provisioning; its contract waits for activation
        alder_start = d(0)
        alder_lines = [
            self.line("TDM-PLAT-YR", "45", currency="GBP", start=alder_start),
            self.line("TDM-SUP-PREM", "1", currency="GBP", start=alder_start),
            self.line("TDM-ONBOARD", "1", currency="GBP"),
        ]
        o_provisioning = self._order(
            "alder", alder_lines, cpq_quote_id="Q-2025-00877", created_days_ago=9
        )
        _backdate(
            o_provisioning,
            created_at=self.ago(9),
            **self._advance(
                o_provisioning, to=OrderState.PROVISIONING, days_ago=[8.9, 8.8, 6, 1.5]
            ),
        )
        c_pending = services.contract_create(
            account=self.accounts["alder"],
            legal_entity=self.entities["TANDEM-GB"],
            currency="GBP",
            start_date=alder_start,
            end_date=_term_end(alder_start, 12),
            lines=_subscription_lines(alder_lines),
            order=o_provisioning,
            **kw,
        )
        _backdate(c_pending, created_at=self.ago(1.5), state_changed_at=self.ago(1.5))

    def _deal_amended(self) -> _Deal:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # active for four months, amended a month ago (more seats)
        bw_start = d(-120)
        bw_lines = [
            self.line("TDM-PLAT-YR", "40", currency="USD", start=bw_start),
            self.line("TDM-CONN-ERP", "1", currency="USD", start=bw_start),
            self.line("TDM-ONBOARD", "1", currency="USD"),
        ]
        o_active_bw = self._order(
            "brightwater", bw_lines, cpq_quote_id="Q-2025-00611", created_days_ago=128
        )
        _backdate(
            o_active_bw,
            created_at=self.ago(128),
            **self._advance(
                o_active_bw, to=OrderState.ACTIVE, days_ago=[127.9, 127.8, 125, 124, 120]
            ),
        )
        c_amended = services.contract_create(
            account=self.accounts["brightwater"],
            legal_entity=self.entities["TANDEM-US"],
            currency="USD",
            start_date=bw_start,
            end_date=_term_end(bw_start, 12),
            lines=_subscription_lines(bw_lines),
            order=o_active_bw,
            **kw,
        )
        services.contract_activate(contract=c_amended, **kw)
        services.contract_amend(
            contract=c_amended,
            effective_date=d(-30),
            lines=[
                self.line("TDM-PLAT-YR", "55", currency="USD", start=bw_start),
                self.line("TDM-CONN-ERP", "1", currency="USD", start=bw_start),
            ],
            **kw,
        )
        c_amended = _backdate(
            c_amended,
            created_at=self.ago(124),
            activated_at=self.ago(120),
            state_changed_at=self.ago(120),
        )

        return _Deal(order=o_active_bw, contract=c_amended, start=bw_start)

    def _deal_active(self) -> _Deal:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # active for six weeks in Germany, usage billed monthly
        nl_start = d(-45)
        nl_lines = [
            self.line("TDM-PLAT-MO", "80", currency="EUR", start=nl_start),
            self.line("TDM-ARCH-GB", "2000", currency="EUR", start=nl_start),
            self.line("TDM-TRAIN-DAY", "2", currency="EUR"),
        ]
        o_active_nl = self._order("nordlicht", nl_lines, created_days_ago=52)
        _backdate(
            o_active_nl,
            created_at=self.ago(52),
            **self._advance(o_active_nl, to=OrderState.ACTIVE, days_ago=[51.9, 51.8, 49, 48, 45]),
        )
        c_active = services.contract_create(
            account=self.accounts["nordlicht"],
            legal_entity=self.entities["TANDEM-DE"],
            currency="EUR",
            start_date=nl_start,
            end_date=_term_end(nl_start, 12),
            lines=_subscription_lines(nl_lines),
            order=o_active_nl,
            **kw,
        )
        services.contract_activate(contract=c_active, **kw)
        c_active = _backdate(
            c_active,
            created_at=self.ago(48),
            activated_at=self.ago(45),
            state_changed_at=self.ago(45),
        )

        return _Deal(order=o_active_nl, contract=c_active, start=nl_start)

    def _deal_expired(self) -> _Deal:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # last year's deal: fulfilled, and its contract ran out five weeks ago
        mc_start = d(-400)
        mc_lines = [
            self.line("TDM-PLAT-YR", "25", currency="GBP", start=mc_start),
            self.line("TDM-SUP-PREM", "1", currency="GBP", start=mc_start),
        ]
        o_fulfilled_mc = self._order(
            "meridian", mc_lines, cpq_quote_id="Q-2024-00342", created_days_ago=410
        )
        _backdate(
            o_fulfilled_mc,
            created_at=self.ago(410),
            **self._advance(
                o_fulfilled_mc, to=OrderState.FULFILLED, days_ago=[409, 408, 405, 404, 400, 380]
            ),
        )
        c_expired = services.contract_create(
            account=self.accounts["meridian"],
            legal_entity=self.entities["TANDEM-GB"],
            currency="GBP",
            start_date=mc_start,
            end_date=d(-36),
            lines=_subscription_lines(mc_lines),
            order=o_fulfilled_mc,
            **kw,
        )
        services.contract_activate(contract=c_expired, **kw)
        transition_apply(c_expired, "expire", **kw)
        c_expired = _backdate(
            c_expired,
            created_at=self.ago(404),
            activated_at=self.ago(400),
            state_changed_at=self.ago(35),
        )

        return _Deal(order=o_fulfilled_mc, contract=c_expired, start=mc_start)

    def _deal_cancelled(self) -> _Deal:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # fulfilled seven months ago; the customer cancelled the subscription last month
        hp_start = d(-210)
        hp_lines = [self.line("TDM-PLAT-MO", "12", currency="USD", start=hp_start)]
        o_fulfilled_hp = self._order("harbor", hp_lines, created_days_ago=215)
        _backdate(
            o_fulfilled_hp,
            created_at=self.ago(215),
            **self._advance(
                o_fulfilled_hp, to=OrderState.FULFILLED, days_ago=[214.9, 214.8, 213, 212, 210, 200]
            ),
        )
        c_cancelled = services.contract_create(
            account=self.accounts["harbor"],
            legal_entity=self.entities["TANDEM-US"],
            currency="USD",
            start_date=hp_start,
            end_date=_term_end(hp_start, 12),
            lines=_subscription_lines(hp_lines),
            order=o_fulfilled_hp,
            **kw,
        )
        services.contract_activate(contract=c_cancelled, **kw)
        services.contract_cancel(contract=c_cancelled, effective_date=d(-20), **kw)
        c_cancelled = _backdate(
            c_cancelled,
            created_at=self.ago(212),
            activated_at=self.ago(210),
            state_changed_at=self.ago(24),
        )

        return _Deal(order=o_fulfilled_hp, contract=c_cancelled, start=hp_start)

    def _orders_stopped(self) -> None:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # on hold since it reached the ERP: the credit check is open
        o_on_hold = self._order(
            "kestrel",
            [self.line("TDM-SUP-PREM", "1", currency="USD", start=d(10))],
            created_days_ago=6,
        )
        self._advance(o_on_hold, to=OrderState.SUBMITTED_TO_ERP, days_ago=[5.9, 5.8])
        services.order_hold(order=o_on_hold, **kw)
        _backdate(o_on_hold, created_at=self.ago(6), state_changed_at=self.ago(5))

        # rejected after validation (the ERP refused the tax details)
        o_rejected = self._order(
            "thistle",
            [self.line("TDM-CONN-ERP", "2", currency="GBP", start=d(-10))],
            created_days_ago=12,
        )
        self._advance(o_rejected, to=OrderState.VALIDATED, days_ago=[11.9])
        services.order_reject(order=o_rejected, **kw)
        _backdate(o_rejected, created_at=self.ago(12), state_changed_at=self.ago(11))

        # cancelled before anything happened (the customer re-quoted)
        o_cancelled = self._order(
            "isarwerk",
            [self.line("TDM-PLAT-MO", "100", currency="EUR", start=d(-20))],
            created_days_ago=21,
        )
        services.order_cancel(order=o_cancelled, **kw)
        _backdate(o_cancelled, created_at=self.ago(21), state_changed_at=self.ago(19))

    def _quote_open(self) -> None:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day

        # an approved quote still waiting for the customer's signature
        isw = self.accounts["isarwerk"]
        open_quote = services.quote_create(
            cpq_quote_id="Q-2025-00925",
            account=isw,
            legal_entity=self.entities["TANDEM-DE"],
            currency="EUR",
            approved_at=self.ago(0.5),
            valid_until=d(29),
            lines=[self.line("TDM-TRAIN-DAY", "3", currency="EUR")],
            **kw,
        )
        _backdate(open_quote, created_at=self.ago(0.5), state_changed_at=self.ago(0.5))

    def _invoices_and_payments(
        self, *, amended: _Deal, active: _Deal, expired: _Deal, cancelled: _Deal
    ) -> None:
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        d = self.day
        self._invoice(
            expired.order,
            expired.contract,
            issued_days_ago=399,
            paid=[("full", 372, "bacs")],
            period_start=expired.start,
        )
        self._invoice(
            amended.order,
            amended.contract,
            issued_days_ago=119,
            paid=[("full", 95, "ach")],
            period_start=amended.start,
            include_one_time=True,
        )
        self._invoice(
            active.order,
            active.contract,
            issued_days_ago=44,
            paid=[("half", 20, "sepa_credit_transfer")],
            period_start=active.start,
            include_one_time=True,
        )
        self._invoice(
            amended.order,
            amended.contract,
            issued_days_ago=29,
            period_start=d(-30),
            skus={"TDM-CONN-ERP"},
        )
        self._invoice(active.order, active.contract, issued_days_ago=None, period_start=d(-15))
        void = self._invoice(
            cancelled.order, cancelled.contract, issued_days_ago=23, period_start=d(-30)
        )
        services.invoice_void(invoice=void, **kw)
        _backdate(void, state_changed_at=self.ago(22))

    def _invoice(
        self,
        order: Order,
        contract: Contract,
        *,
        issued_days_ago: int | None,
        period_start: dt.date,
        paid: list[tuple[str, int, str]] | None = None,
        include_one_time: bool = False,
        skus: set[str] | None = None,
    ) -> Invoice:
        """Invoice one period of the contract; ``issued_days_ago=None`` leaves it a draft."""
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        lines = _invoice_lines(
            order, period_start=period_start, include_one_time=include_one_time, skus=skus
        )
        subtotal = sum((line.quantity * line.unit_price for line in lines), Decimal("0"))
        tax = (subtotal * TAX_RATES[order.legal_entity.country]).quantize(_CENT)
        issue_date = self.day(-issued_days_ago) if issued_days_ago is not None else None
        self._invoice_no += 1
        account = order.account
        assert account is not None  # every seeded order has its customer
        invoice = services.invoice_create(
            account=account,
            legal_entity=order.legal_entity,
            currency=order.currency,
            lines=lines,
            contract=contract,
            order=order,
            number=f"BL-{(issue_date or self.today).year}-{self._invoice_no:06d}",
            issue_date=issue_date,
            due_date=issue_date + dt.timedelta(days=30) if issue_date else None,
            tax_amount=tax,
            **kw,
        )
        if issued_days_ago is None:
            return _backdate(invoice, created_at=self.ago(1), state_changed_at=self.ago(1))
        services.invoice_post(invoice=invoice, **kw)
        invoice = _backdate(
            invoice,
            created_at=self.ago(issued_days_ago, hours=2),
            posted_at=self.ago(issued_days_ago),
            state_changed_at=self.ago(issued_days_ago),
        )
        return self._invoice_pay(invoice, account=account, paid=paid or [])

    def _invoice_pay(
        self, invoice: Invoice, *, account: Account, paid: list[tuple[str, int, str]]
    ) -> Invoice:
        """Record and apply each payment of ``paid``: (``full`` or ``half``, days ago, method)."""
        kw: dict[str, Any] = {"actor": self.actor, "reason": DEMO_REASON}
        for share, days_ago, method in paid:
            amount = invoice.total_amount - invoice.amount_paid
            if share == "half":
                amount = (invoice.total_amount / 2).quantize(_CENT)
            payment = services.payment_record(
                account=account,
                amount=Money(amount, invoice.currency),
                received_at=self.ago(days_ago),
                method=method,
                **kw,
            )
            invoice = services.payment_apply(payment=payment, invoice=invoice, **kw)
            _backdate(payment, created_at=self.ago(days_ago), state_changed_at=self.ago(days_ago))
            invoice = _backdate(invoice, state_changed_at=self.ago(days_ago))
        return invoice


def _invoice_lines(
    order: Order, *, period_start: dt.date, include_one_time: bool, skus: set[str] | None
) -> list[InvoiceLineInput]:
    """One period of the order's recurring lines (limited to ``skus`` when given) at their net
    price, and its one-time lines when ``include_one_time``."""
    lines = []
    for line in order.lines.all():
        if skus is not None and line.product_code not in skus:
            continue
        net_price = (line.unit_price * (100 - line.discount_percent) / 100).quantize(_PRICE)
        if line.kind == LineKind.ONE_TIME:
            if include_one_time:
                lines.append(
                    InvoiceLineInput(
                        description=line.description,
                        quantity=line.quantity,
                        unit_price=net_price,
                        product=line.product,
                    )
                )
            continue
        period_end = _term_end(period_start, _PERIOD_MONTHS[line.billing_period])
        period = f"{period_start:%d %b %Y} to {period_end:%d %b %Y}"
        lines.append(
            InvoiceLineInput(
                description=f"{line.description}, {period}",
                quantity=line.quantity,
                unit_price=net_price,
                product=line.product,
                period_start=period_start,
                period_end=period_end,
            )
        )
    return lines


def _term_end(start: dt.date | None, months: int) -> dt.date:
    """The last day of a term of ``months`` months starting on ``start``."""
    assert start is not None
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, _days_in_month(year, month))
    return dt.date(year, month, day) - dt.timedelta(days=1)


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def _subscription_lines(lines: list[LineInput]) -> list[LineInput]:
    """The lines a subscription carries: recurring and usage, not one-time services."""
    return [line for line in lines if line.kind != LineKind.ONE_TIME]


R = TypeVar("R", Order, Quote, Contract, Invoice, Payment)


def _backdate(record: R, **moments: dt.datetime) -> R:
    """Put a seeded record's timestamps in the past as if it had lived them. Back-dating is
    how the dataset is made, not an edit anyone made: the record and its history rows take the
    moments in place (``created_at`` on every row of its history, the others on its newest row),
    so the audit shows no change to ``created_at`` by the seed."""
    model: type[models.Model] = type(record)
    with transaction.atomic():
        model._default_manager.filter(pk=record.pk).update(**moments)
        history = getattr(model, "history", None)
        if history is not None:
            rows = history.filter(**{model._meta.pk.attname: record.pk})
            if "created_at" in moments:
                rows.update(created_at=moments["created_at"])
            later = {name: value for name, value in moments.items() if name != "created_at"}
            newest = rows.order_by("-history_id").values_list("history_id", flat=True).first()
            if later and newest is not None:
                rows.filter(history_id=newest).update(**later)
    record.refresh_from_db()
    return record
