"""Seed a console-sized database with PostgreSQL COPY: orders, contracts, invoices,
exceptions, the crosswalk, workflow runs and their history, as the running system writes them.

Rows go in through psycopg 3's ``cursor.copy()`` (the history tables too: each history row
carries its actor and change reason, like the audited services write them). Columns come from
the Django models, so a field another branch adds with a default is filled with that default.
Every random choice comes from one seeded generator: the same arguments give the same data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from psycopg.types.json import Jsonb

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Scale:
    orders: int
    exceptions: int
    history: int
    accounts: int
    run_fraction: float = 0.12  # orders with a workflow run, outbound calls and inbound events


# How the history budget is shared between the audited records.
HISTORY_SHARE = {
    "order": 0.60,
    "contract": 0.14,
    "version": 0.02,
    "invoice": 0.14,
    "exception": 0.08,
    "account": 0.02,
}


class FastRandom(random.Random):
    """``choices`` from a precomputed table: ``random.choices`` with weights costs ~10 us a
    call, and the seeder makes tens of millions of them."""

    _tables: dict[tuple[Any, ...], list[Any]] = {}

    def choices(  # type: ignore[override]
        self, population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1
    ) -> list[Any]:
        key = (tuple(population), tuple(weights or ()))
        table = self._tables.get(key)
        if table is None:
            ws = weights or [1] * len(key[0])
            table = [v for v, w in zip(key[0], ws, strict=True) for _ in range(round(w * 10))]
            self._tables[key] = table
        return [table[int(self.random() * len(table))] for _ in range(k)]


# --- COPY with the models' own columns --------------------------------------------------------


class Table:
    """The columns of one model's table, each with its default, in table order."""

    def __init__(self, model: type[models.Model], *, skip: tuple[str, ...] = ()) -> None:
        self.model = model
        self.name = model._meta.db_table
        fields = [f for f in model._meta.concrete_fields if f.attname not in skip]
        self.columns = [f.column for f in fields]
        self.attnames = [f.attname for f in fields]
        self.position = {name: i for i, name in enumerate(self.attnames)}
        self.defaults = [self._default(f) for f in fields]

    @staticmethod
    def _default(f: models.Field[Any, Any]) -> Any:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            return NOW
        if f.has_default():
            value = f.get_default()
            return Jsonb(value) if isinstance(value, dict | list) else value
        if f.null:
            return None
        if isinstance(f, models.CharField | models.TextField):
            return ""
        return None  # the seeder must give a value (a NOT NULL column without a default)

    def row(self, **values: Any) -> list[Any]:
        out = self.defaults.copy()
        for name, value in values.items():
            out[self.position[name]] = value
        return out


class History:
    """The history table of an audited model: a snapshot row plus who, when, why."""

    def __init__(self, record: Table) -> None:
        model = record.model.history.model  # type: ignore[attr-defined]
        self.name = model._meta.db_table
        extra = ["history_date", "history_change_reason", "history_type", "history_user_id"]
        names = {f.attname for f in model._meta.concrete_fields}
        self.from_record = [i for i, a in enumerate(record.attnames) if a in names]
        kept = [record.attnames[i] for i in self.from_record]
        by_attname = {f.attname: f.column for f in model._meta.concrete_fields}
        self.columns = [by_attname[a] for a in kept] + extra
        self.position = {a: i for i, a in enumerate(kept)}

    def row(
        self,
        record_row: list[Any],
        when: dt.datetime,
        why: str,
        kind: str,
        user: int | None,
        **changed: Any,
    ) -> list[Any]:
        out = [record_row[i] for i in self.from_record]
        for name, value in changed.items():
            out[self.position[name]] = value
        out += [when, why, kind, user]
        return out


def text(value: Any) -> str:
    """One value in COPY's text format (psycopg's write_row is several times slower)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return (
                value.replace("\\", "\\\\")
                .replace("\t", "\\t")
                .replace("\n", "\\n")
                .replace("\r", "\\r")
            )
        return value
    if kind is bool:
        return "t" if value else "f"
    if kind is Jsonb:
        return text(json.dumps(value.obj))
    return str(value)


def copy_lines(table: str, columns: list[str], lines: list[str]) -> int:
    quoted = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
            copy.write("\n".join(lines) + "\n")
    return len(lines)


@dataclass
class Stream:
    """Rows for one table, written in batches so memory stays flat."""

    table: str
    columns: list[str]
    rows: list[str] = field(default_factory=list)
    written: int = 0
    batch: int = 20_000

    def add(self, row: list[Any]) -> None:
        self.rows.append("\t".join(map(text, row)))
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.written += copy_lines(self.table, self.columns, self.rows)
            self.rows = []


class Streams:
    def __init__(self) -> None:
        self.by_name: dict[str, Stream] = {}

    def table(self, t: Table | History) -> Stream:
        if t.name not in self.by_name:
            self.by_name[t.name] = Stream(t.name, t.columns)
        return self.by_name[t.name]

    def flush(self) -> dict[str, int]:
        for s in self.by_name.values():
            s.flush()
        return {name: s.written for name, s in self.by_name.items()}


# --- people, system actors, reference data ---------------------------------------------------

SYSTEM_ACTORS = [
    "worker",
    "scheduler",
    "connector:erp",
    "connector:billing",
    "connector:cpq",
    "connector:crm",
    "connector:tax",
    "connector:payments",
    "sandbox:cpq",
]
PEOPLE = {
    "sales_ops": ["amara.okafor", "ben.schulz", "chloe.martin", "diego.ramos", "elif.yilmaz"],
    "finance_ops": ["farah.haddad", "gustav.berg", "hana.sato", "ivan.petrov"],
    "data_steward": ["jana.novak", "kofi.mensah", "lena.vogel"],
    "integration_support": ["marco.rossi", "nina.kowalski", "omar.farouk", "priya.nair"],
    "auditor": ["quinn.adams", "rosa.lind"],
}
BENCH_USER = "bench.auditor"


def users_create() -> dict[str, int]:
    """People in every role plus the system actors; returns username -> pk."""
    from core.audit import system_user

    user_model = get_user_model()
    found: dict[str, int] = {}
    for role, names in PEOPLE.items():
        group = Group.objects.get(name=role)
        for name in [*names, *([BENCH_USER] if role == "auditor" else [])]:
            first, _, last = name.partition(".")
            user = user_model.objects.create_user(
                username=name, password=None, first_name=first.title(), last_name=last.title()
            )
            user.groups.add(group)
            found[name] = user.pk
    for name in SYSTEM_ACTORS:
        found[name] = system_user(name).pk
    return found


ENTITIES = [
    ("TDM-US", "Tandem Inc.", "US", "USD"),
    ("TDM-CA", "Tandem Canada Ltd.", "CA", "CAD"),
    ("TDM-UK", "Tandem Software Ltd.", "GB", "GBP"),
    ("TDM-DE", "Tandem GmbH", "DE", "EUR"),
    ("TDM-FR", "Tandem SAS", "FR", "EUR"),
    ("TDM-NL", "Tandem B.V.", "NL", "EUR"),
    ("TDM-AU", "Tandem Pty Ltd", "AU", "AUD"),
    ("TDM-JP", "Tandem K.K.", "JP", "JPY"),
]
ENTITY_WEIGHTS = [40, 5, 14, 14, 8, 6, 7, 6]
NAME_A = [
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Aperture",
    "Gringotts",
    "Oceanic",
    "Pied Piper",
    "Massive Dynamic",
    "Blue Sun",
    "Monarch",
    "Nakatomi",
    "Sirius",
    "Virtucon",
    "Zorg",
    "Dunder",
    "Prestige",
    "Bluth",
    "Kramerica",
    "Rekall",
    "Octan",
    "Ollivander",
    "Krusty",
    "Duff",
    "Ajax",
]
NAME_B = [
    "Logistics",
    "Analytics",
    "Foods",
    "Pharma",
    "Robotics",
    "Capital",
    "Media",
    "Energy",
    "Health",
    "Retail",
    "Labs",
    "Systems",
    "Networks",
    "Holdings",
    "Motors",
    "Studios",
    "Insurance",
    "Aerospace",
    "Textiles",
    "Biotech",
    "Mining",
    "Consulting",
    "Software",
]
NAME_C = ["Inc.", "LLC", "Ltd.", "GmbH", "SAS", "B.V.", "Pty Ltd", "K.K.", "AG", "S.A."]
CITIES = {
    "US": ["Austin", "Boston", "Denver", "Seattle"],
    "CA": ["Toronto", "Montreal"],
    "GB": ["London", "Leeds"],
    "DE": ["Berlin", "Munich"],
    "FR": ["Paris", "Lyon"],
    "NL": ["Amsterdam", "Utrecht"],
    "AU": ["Sydney", "Melbourne"],
    "JP": ["Tokyo", "Osaka"],
}
PRODUCTS = [
    ("PLAT", "Platform", "recurring", "month"),
    ("SEAT", "User seat", "recurring", "month"),
    ("ANLY", "Analytics add-on", "recurring", "year"),
    ("SUPP", "Premium support", "recurring", "year"),
    ("STOR", "Storage block", "recurring", "quarter"),
    ("ONBD", "Onboarding", "one_time", ""),
    ("TRNG", "Training day", "one_time", ""),
    ("APIC", "API calls", "usage", ""),
]


# --- the order's life ------------------------------------------------------------------------

PATH = [
    "received",
    "validated",
    "submitted_to_erp",
    "accepted",
    "provisioning",
    "active",
    "fulfilled",
]
ENTRY = {  # who moves an order into each state, and why (as the workflow writes it)
    "received": ("worker", "quote.approved from cpq"),
    "validated": ("worker", "quote validated, customer resolved"),
    "submitted_to_erp": ("connector:erp", "ERP sales order {erp}"),
    "accepted": ("connector:erp", "ERP accepted the order"),
    "provisioning": ("worker", "subscriptions {sub}"),
    "active": ("worker", "contract active"),
    "fulfilled": ("scheduler", "term ended"),
}
HOLD_REASONS = [
    "customer asked to pause provisioning",
    "credit check pending",
    "awaiting signed PO",
    "step create_erp_order failed",
    "step check_tax_and_entity failed",
    "step map_products failed",
    "legal review of non-standard terms",
]
CANCEL_REASONS = [
    "customer withdrew",
    "duplicate of an earlier order",
    "replaced by amendment",
    "deal lost at signature",
]
REJECT_REASONS = [
    "quote expired before conversion",
    "legal entity not allowed for country",
    "pricing below floor",
    "missing tax registration",
]
TOUCH_REASONS = [
    ("worker", "lines linked to catalog products"),
    ("worker", "customer resolved by tax_id"),
    ("person", "billing contact corrected"),
    ("person", "PO number added"),
    ("connector:erp", "erp id recorded"),
    ("connector:billing", "billing id recorded"),
]
# How long an order normally stays in each pre-active state (its SLA is of this order).
STATE_DWELL = {
    "received": (1 * MINUTE, 20 * MINUTE),
    "validated": (1 * MINUTE, 30 * MINUTE),
    "submitted_to_erp": (10 * MINUTE, 8 * HOUR),
    "accepted": (2 * MINUTE, 2 * HOUR),
    "provisioning": (5 * MINUTE, 6 * HOUR),
    "active": (30 * DAY, 365 * DAY),
}
PRE_ACTIVE = PATH[:5]


def _span(rng: random.Random, low: dt.timedelta, high: dt.timedelta) -> dt.timedelta:
    return low + (high - low) * rng.random() ** 2


def order_life(rng: random.Random, created: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """The (state, entered at) steps of one order, ending in its current state."""
    age = NOW - created
    steps = [("received", created)]
    if age < 3 * DAY:
        target = rng.choices(PATH[:6], weights=[6, 5, 20, 14, 15, 40])[0]
    else:
        target = rng.choices(PATH, weights=[0.4, 0.3, 2.5, 1.0, 1.8, 50, 44])[0]
    stuck = age >= 3 * DAY and target in PRE_ACTIVE
    at = created
    for state in PATH[1 : PATH.index(target) + 1]:
        previous = steps[-1][0]
        at = at + _span(rng, *STATE_DWELL[previous])
        if at >= NOW:
            break
        steps.append((state, at))
    if stuck:  # it has sat in its state for days: exactly what the dashboard must find
        state, at = steps[-1]
        steps[-1] = (state, min(at, NOW - _span(rng, 3 * DAY, age)))
    last_state, last_at = steps[-1]
    roll = rng.random()
    if last_state in PRE_ACTIVE and roll < 0.10:
        held_at = last_at + (NOW - last_at) * rng.random()
        steps.append(("on_hold", held_at))
    elif last_state in PRE_ACTIVE[:3] and roll < 0.22:
        steps.append(("rejected", last_at + (NOW - last_at) * rng.random() * 0.2))
    elif last_state in PRE_ACTIVE and roll < 0.40 and age > 7 * DAY:
        steps.append(("cancelled", last_at + (NOW - last_at) * rng.random() * 0.5))
    return steps


def created_at_of(rng: random.Random, pk: int, n: int) -> dt.datetime:
    """Two years of orders numbered oldest first, more of them recently (the business grows)."""
    return NOW - 730 * DAY * (1 - pk / (n + 1)) ** 1.4 - rng.random() * 10 * MINUTE


def run_cut_of(scale: Scale) -> int:
    """Orders after this one have a workflow run, outbound calls and inbound events."""
    return int(scale.orders * (1 - scale.run_fraction))


STEP_NAMES = [
    "validate_quote",
    "resolve_customer",
    "map_products",
    "split_lines",
    "check_tax_and_entity",
    "upsert_customer_erp",
    "upsert_customer_billing",
    "create_erp_order",
    "await_financial_acceptance",
    "create_subscription",
    "send_one_time_lines",
    "activate_contract",
]


def _history_counts(rng: random.Random, total: int, records: int) -> Callable[[], int]:
    """How many history rows the next record gets: ``total`` over ``records`` on average."""
    rate = total / max(records, 1)
    base, frac = int(rate), rate % 1
    return lambda: base + (1 if rng.random() < frac else 0)


def fit(
    rng: random.Random, steps: list[tuple[str, dt.datetime]], rows: int
) -> list[tuple[str, dt.datetime, bool]]:
    """``rows`` history entries from a life: its latest transitions, then same-state touches."""
    if rows <= 0:
        return []
    # Too few rows for the whole life: keep its creation and its latest transitions.
    chosen = steps if rows >= len(steps) else [steps[0], *steps[len(steps) - rows + 1 :]]
    kept = [(state, at, False) for state, at in chosen[:rows]]
    missing = rows - len(kept)
    for _ in range(missing):
        i = rng.randrange(len(kept))
        state, at, _touch = kept[i]
        until = kept[i + 1][1] if i + 1 < len(kept) else NOW
        kept.insert(i + 1, (state, at + (until - at) * rng.random(), True))
    kept.sort(key=lambda entry: entry[1])
    return kept


# --- the seeder ------------------------------------------------------------------------------

ORDER_SLA_HINT = "stuck = pre-active state older than 3 days"


class Seeder:
    def __init__(
        self, scale: Scale, *, seed: int = 20261126, workers: int = 3, say: Callable[[str], None]
    ) -> None:
        self.scale = scale
        self.workers = workers
        self.seed = seed
        self.rng = FastRandom(seed)
        self.say = say
        self.streams = Streams()
        self.counts: dict[str, int] = {}

    # helpers
    def actor(self, name: str, team: str | None = None) -> int:
        if name == "person":
            team = team or self.rng.choice(list(PEOPLE))
            return self.users[self.rng.choice(PEOPLE[team])]
        return self.users[name]

    def run(self) -> dict[str, int]:
        from masterdata.models import Account, ExternalId, LegalEntity, Product, ProductMapping
        from q2c.models import Order

        started = time.monotonic()
        self.users = users_create()
        self.ct = {
            name: ContentType.objects.get_for_model(model).pk
            for name, model in (("account", Account), ("order", Order))
        }
        from q2c.models import Contract, Invoice, Quote

        self.ct.update(
            {
                "quote": ContentType.objects.get_for_model(Quote).pk,
                "contract": ContentType.objects.get_for_model(Contract).pk,
                "invoice": ContentType.objects.get_for_model(Invoice).pk,
            }
        )
        self.t_entity = Table(LegalEntity)
        self.t_account = Table(Account)
        self.t_product = Table(Product)
        self.t_mapping = Table(ProductMapping)
        self.t_xid = Table(ExternalId)
        self.h_account = History(self.t_account)
        self.reference_data()
        self.accounts()
        self.say(f"accounts done ({time.monotonic() - started:.0f} s)")
        for name, n in self.streams.flush().items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.parallel()
        self.say(
            f"orders, contracts, invoices, exceptions done ({time.monotonic() - started:.0f} s)"
        )
        self.sequences_reset()
        return self.counts

    def parallel(self) -> None:
        """Orders in id ranges and the exceptions, in ``workers`` forked processes."""
        global _CURRENT
        n = self.scale.orders
        chunk = max(n // (self.workers * 4), 1000)
        jobs = [("exceptions", 0, 0)] + [
            ("orders", first, min(first + chunk - 1, n)) for first in range(1, n + 1, chunk)
        ]
        _CURRENT = self
        connection.close()  # each child opens its own connection
        with multiprocessing.get_context("fork").Pool(self.workers) as pool:
            for counts in pool.imap_unordered(_seed_job, jobs):
                for name, rows in counts.items():
                    self.counts[name] = self.counts.get(name, 0) + rows
        _CURRENT = None

    def reference_data(self) -> None:
        from core.identifiers import format_identifier

        s = self.streams.table(self.t_entity)
        self.entities: list[tuple[int, str]] = []
        for i, (code, name, country, currency) in enumerate(ENTITIES, start=1):
            s.add(
                self.t_entity.row(
                    id=i,
                    enterprise_id=format_identifier("LE", i),
                    created_at=NOW - 900 * DAY,
                    code=code,
                    name=name,
                    country=country,
                    currency=currency,
                    erp_subsidiary=f"SUB-{i:02d}",
                    tax_registration=f"{country}{i:09d}",
                )
            )
            self.entities.append((i, currency))
        s.flush()
        sp, sm = self.streams.table(self.t_product), self.streams.table(self.t_mapping)
        self.products: list[tuple[int, str, str, str]] = []
        pk = 0
        for tier in ("S", "M", "L", "XL", "ENT"):
            for code, name, kind, period in PRODUCTS:
                pk += 1
                sku = f"{code}-{tier}"
                sp.add(
                    self.t_product.row(
                        id=pk,
                        enterprise_id=format_identifier("PRD", pk),
                        created_at=NOW - 900 * DAY,
                        sku=sku,
                        name=f"{name} {tier}",
                        kind=kind,
                        billing_period=period,
                    )
                )
                for j, system in enumerate(("erp", "billing")):
                    sm.add(
                        self.t_mapping.row(
                            id=pk * 2 - 1 + j,
                            product_id=pk,
                            system=system,
                            external_id=f"{system}-{sku.lower()}",
                            external_kind="item" if system == "erp" else "plan",
                        )
                    )
                self.products.append((pk, sku, kind, period))
        sp.flush()
        sm.flush()

    def xid(
        self,
        xid_pk: int,
        system: str,
        object_type: str,
        external_id: str,
        ct: str,
        pk: int,
        eid: str,
    ) -> None:
        self.streams.table(self.t_xid).add(
            self.t_xid.row(
                id=xid_pk,
                system=system,
                object_type=object_type,
                external_id=external_id,
                content_type_id=self.ct[ct],
                object_id=pk,
                enterprise_id=eid,
            )
        )

    def accounts(self) -> None:
        from core.identifiers import format_identifier

        rng = self.rng
        n = self.scale.accounts
        s, h = self.streams.table(self.t_account), self.streams.table(self.h_account)
        per = _history_counts(rng, int(self.scale.history * HISTORY_SHARE["account"]), n)
        self.account_entity: list[int] = [0] * (n + 1)
        self.account_names: list[str] = [""] * (n + 1)
        for pk in range(1, n + 1):
            entity = rng.choices(range(len(ENTITIES)), weights=ENTITY_WEIGHTS)[0]
            _, _, country, currency = ENTITIES[entity]
            name = f"{rng.choice(NAME_A)} {rng.choice(NAME_B)} {pk % 997} {rng.choice(NAME_C)}"
            eid = format_identifier("ACC", pk)
            slug = name.lower().replace(" ", "").replace(".", "")[:40]
            created = NOW - 900 * DAY * rng.random()
            row = self.t_account.row(
                id=pk,
                enterprise_id=eid,
                created_at=created,
                updated_at=created,
                legal_name=name,
                domain=f"{slug}.example",
                tax_id=f"{country}{pk:010d}",
                country=country,
                currency=currency,
                legal_entity_id=entity + 1,
                address_line1=f"{pk % 400 + 1} Market Street",
                city=rng.choice(CITIES[country]),
                postcode=f"{pk % 90000 + 10000}",
                email=f"billing@{slug}.example",
                tax_id_key=f"{country}{pk:010d}",
                domain_key=f"{slug}.example",
                name_key=name.lower(),
            )
            s.add(row)
            self.account_entity[pk] = entity + 1
            self.account_names[pk] = name
            n_rows = per()
            for k in range(n_rows):
                when = created + (NOW - created) * (k / max(n_rows, 1))
                who, why = (
                    ("worker", f"new customer from CPQ quote Q-{pk:07d}")
                    if k == 0
                    else ("person", rng.choice(["address corrected", "billing email updated"]))
                )
                h.add(
                    self.h_account.row(
                        row, when, why, "+" if k == 0 else "~", self.actor(who, "data_steward")
                    )
                )
            self.xid(pk * 4, "crm", "account", f"001{pk:012d}", "account", pk, eid)
            if rng.random() < 0.8:
                self.xid(pk * 4 + 1, "erp", "customer", f"C{pk:08d}", "account", pk, eid)
                self.xid(pk * 4 + 2, "billing", "customer", f"cus_{pk:014x}", "account", pk, eid)

    def orders(self, first: int, last: int) -> None:
        from core.identifiers import format_identifier
        from orchestration.models import InboundEvent, OutboundCall
        from orchestration.workflows.models import StepRun, WorkflowRun
        from q2c.models import (
            Contract,
            ContractLine,
            ContractVersion,
            Invoice,
            InvoiceLine,
            Order,
            OrderLine,
            Quote,
        )

        rng = self.rng
        sc = self.scale
        t_quote, t_order, t_line = Table(Quote), Table(Order), Table(OrderLine)
        t_contract, t_version, t_cline = (
            Table(Contract),
            Table(ContractVersion),
            Table(ContractLine),
        )
        t_invoice, t_iline = Table(Invoice), Table(InvoiceLine)
        t_run, t_step = Table(WorkflowRun), Table(StepRun)
        t_call, t_event = Table(OutboundCall), Table(InboundEvent)
        h_order, h_contract = History(t_order), History(t_contract)
        h_version, h_invoice = History(t_version), History(t_invoice)
        h_run = History(t_run)
        S = self.streams.table
        n_contracts_est = int(sc.orders * 0.85)
        per_order = _history_counts(rng, int(sc.history * HISTORY_SHARE["order"]), sc.orders)
        per_contract = _history_counts(
            rng, int(sc.history * HISTORY_SHARE["contract"]), n_contracts_est
        )
        per_version_total = int(sc.history * HISTORY_SHARE["version"])
        per_invoice = _history_counts(
            rng, int(sc.history * HISTORY_SHARE["invoice"]), int(sc.orders * 0.95)
        )
        version_rows_each = max(per_version_total / max(n_contracts_est * 1.4, 1), 0)
        # orders are numbered oldest first, like the identifier counter hands them out
        # Orders [first, last] of the whole seed; every other id derives from the order's, so
        # ranges seed in parallel processes without sharing counters (ids may have gaps).
        steps_def = [
            ("validate_quote", "worker"),
            ("resolve_customer", "worker"),
            ("map_products", "worker"),
            ("split_lines", "worker"),
            ("check_tax_and_entity", "tax"),
            ("upsert_customer_erp", "erp"),
            ("upsert_customer_billing", "billing"),
            ("create_erp_order", "erp"),
            ("await_financial_acceptance", "worker"),
            ("create_subscription", "billing"),
            ("send_one_time_lines", "erp"),
            ("activate_contract", "worker"),
        ]
        ops = {
            "check_tax_and_entity": ("tax", "tax_quote", "POST", "v1/tax/quotes"),
            "upsert_customer_erp": ("erp", "customer_create", "POST", "api/customers"),
            "upsert_customer_billing": ("billing", "customer_create", "POST", "v1/customers"),
            "create_erp_order": ("erp", "sales_order_create", "POST", "api/sales-orders"),
            "create_subscription": ("billing", "subscription_create", "POST", "v1/subscriptions"),
            "send_one_time_lines": ("erp", "invoice_create", "POST", "api/invoices"),
        }
        step_stop = {  # how far the workflow got for an order in each state
            "received": 2,
            "validated": 5,
            "submitted_to_erp": 9,
            "accepted": 10,
            "provisioning": 11,
            "active": 12,
            "fulfilled": 12,
        }
        run_cut = run_cut_of(sc)
        xbase = (sc.accounts + 1) * 4
        for pk in range(first, last + 1):
            i = pk - 1
            created = created_at_of(rng, pk, sc.orders)
            eid = format_identifier("ORD", pk)
            account = rng.randint(1, sc.accounts)
            entity = self.account_entity[account]
            currency = ENTITIES[entity - 1][3]
            life = order_life(rng, created)
            state, state_at = life[-1]
            reached = [s for s, _ in life if s in PATH]
            at_of = dict(life)
            # the quote it came from
            cpq_id = f"Q-{pk + 100000:07d}"
            n_lines = rng.choices([1, 2, 3, 4, 5], weights=[25, 30, 25, 12, 8])[0]
            lines = []
            total = 0
            for ln in range(1, n_lines + 1):
                prod_pk, sku, kind, period = rng.choice(self.products)
                qty = rng.choice([1, 1, 1, 5, 10, 25, 50, 100]) if kind != "usage" else 0
                price = rng.choice([9, 19, 49, 99, 250, 990, 4800, 12000])
                disc = rng.choice([0, 0, 0, 5, 10, 15, 20])
                amount = round(qty * price * (100 - disc) / 100, 2)
                total += amount
                lines.append((ln, prod_pk, sku, kind, period, qty, price, disc, amount))
            total_s = f"{total:.2f}"
            S(t_quote).add(
                t_quote.row(
                    id=pk,
                    enterprise_id=format_identifier("QTE", pk),
                    created_at=created,
                    updated_at=created,
                    state_changed_at=created,
                    cpq_quote_id=cpq_id,
                    account_id=account,
                    legal_entity_id=entity,
                    currency=currency,
                    approved_at=created - 5 * MINUTE,
                    total_amount=total_s,
                    state="converted",
                    customer_snapshot=Jsonb({"name": self.account_names[account]}),
                )
            )
            self.xid(
                xbase + pk * 8, "cpq", "quote", cpq_id, "quote", pk, format_identifier("QTE", pk)
            )
            held_from = ""
            hold_reason = rejection = cancellation = ""
            if state == "on_hold":
                held_from = life[-2][0]
                hold_reason = rng.choice(HOLD_REASONS)
            elif state == "rejected":
                rejection = rng.choice(REJECT_REASONS)
            elif state == "cancelled":
                cancellation = rng.choice(CANCEL_REASONS)
            accepted_at = at_of.get("accepted")
            activated_at = at_of.get("active")
            row = t_order.row(
                id=pk,
                enterprise_id=eid,
                created_at=created,
                updated_at=state_at,
                state_changed_at=state_at,
                quote_id=pk,
                account_id=account,
                legal_entity_id=entity,
                currency=currency,
                total_amount=total_s,
                state=state,
                held_from_state=held_from,
                hold_reason=hold_reason,
                rejection_reason=rejection,
                cancellation_reason=cancellation,
                accepted_at=accepted_at,
                activated_at=activated_at,
            )
            S(t_order).add(row)
            for ln, prod_pk, sku, kind, period, qty, price, disc, amount in lines:
                line_pk = pk * 8 + ln
                S(t_line).add(
                    t_line.row(
                        id=line_pk,
                        order_id=pk,
                        line_no=ln,
                        product_id=prod_pk,
                        product_code=sku,
                        description=sku,
                        kind=kind,
                        quantity=qty,
                        unit_price=price,
                        discount_percent=disc,
                        billing_period=period,
                        term_start=created.date() if period else None,
                        term_end=(created + 365 * DAY).date() if period else None,
                        amount=f"{amount:.2f}",
                    )
                )
            # its history: the transitions, who made them and why
            erp_so = f"SO{pk + 5000000}"
            sub = f"sub_{pk:012x}"
            for state_h, when, touch in fit(rng, life, per_order()):
                if touch:
                    who, why = rng.choice(TOUCH_REASONS)
                    kind_h = "~"
                elif state_h in ENTRY:
                    who, why = ENTRY[state_h]
                    why = why.format(erp=erp_so, sub=sub)
                    kind_h = "+" if state_h == "received" else "~"
                elif state_h == "on_hold":
                    who, why, kind_h = (
                        ("worker", hold_reason, "~")
                        if hold_reason.startswith("step")
                        else ("person", hold_reason, "~")
                    )
                else:
                    who, kind_h = "person", "~"
                    why = rejection or cancellation
                S(h_order).add(
                    h_order.row(
                        row,
                        when,
                        why,
                        kind_h,
                        self.actor(who, "sales_ops"),
                        state=state_h,
                        state_changed_at=when,
                        updated_at=when,
                    )
                )
            if "submitted_to_erp" in reached:
                self.xid(xbase + pk * 8 + 1, "erp", "sales_order", erp_so, "order", pk, eid)
            # the contract, its versions and lines, for subscriptions that went live
            contract_ids: list[int] = []
            recurring = [ln for ln in lines if ln[3] == "recurring"]
            if recurring and "provisioning" in reached:
                contract_pk = pk
                cid = format_identifier("CTR", contract_pk)
                start = (at_of.get("provisioning") or created).date()
                if state == "fulfilled":
                    c_state = rng.choices(["expired", "cancelled"], weights=[85, 15])[0]
                elif state == "active":
                    c_state = rng.choices(["active", "renewed"], weights=[92, 8])[0]
                else:
                    c_state = "pending_activation"
                c_at = at_of.get("active") or at_of.get("provisioning") or created
                if c_state in ("expired", "cancelled"):
                    c_at = at_of.get("fulfilled", c_at)
                end = start + dt.timedelta(days=365 * rng.choice([1, 1, 2, 3]))
                crow = t_contract.row(
                    id=contract_pk,
                    enterprise_id=cid,
                    created_at=c_at,
                    updated_at=c_at,
                    state_changed_at=c_at,
                    account_id=account,
                    legal_entity_id=entity,
                    order_id=pk,
                    currency=currency,
                    start_date=start,
                    end_date=end,
                    state=c_state,
                    activated_at=at_of.get("active"),
                    cancellation_reason="customer churned" if c_state == "cancelled" else "",
                )
                S(t_contract).add(crow)
                contract_ids.append(contract_pk)
                self.xid(
                    xbase + pk * 8 + 2, "billing", "subscription", sub, "contract", contract_pk, cid
                )
                c_life = [("pending_activation", at_of.get("provisioning") or created)]
                if c_state != "pending_activation":
                    c_life.append(("active", at_of.get("active") or c_at))
                if c_state != "active" and c_state != "pending_activation":
                    c_life.append((c_state, c_at))
                for st, when, touch in fit(rng, c_life, per_contract()):
                    why = (
                        rng.choice(["amendment processed", "renewal terms updated"])
                        if touch
                        else {
                            "pending_activation": f"subscription contract for {eid}",
                            "active": "financially accepted and billed",
                            "renewed": "renewal.processed from billing",
                            "expired": "term ended",
                            "cancelled": "cancellation.processed from cpq",
                        }[st]
                    )
                    who = "worker" if not touch else "person"
                    S(h_contract).add(
                        h_contract.row(
                            crow,
                            when,
                            why,
                            "+" if st == "pending_activation" and not touch else "~",
                            self.actor(who, "finance_ops"),
                            state=st,
                            state_changed_at=when,
                        )
                    )
                n_versions = rng.choices([1, 2, 3], weights=[70, 20, 10])[0]
                for number in range(1, n_versions + 1):
                    version_pk = pk * 4 + number
                    v_kind = "initial" if number == 1 else rng.choice(["amendment", "renewal"])
                    v_state = "active" if number == n_versions else "superseded"
                    if c_state == "pending_activation":
                        v_state = "pending" if number == n_versions else "superseded"
                    vrow = t_version.row(
                        id=version_pk,
                        contract_id=contract_pk,
                        number=number,
                        kind=v_kind,
                        effective_date=start + dt.timedelta(days=90 * (number - 1)),
                        order_id=pk,
                        state=v_state,
                        created_at=c_at,
                    )
                    S(t_version).add(vrow)
                    n_vh = int(version_rows_each) + (
                        1 if rng.random() < version_rows_each % 1 else 0
                    )
                    for k in range(n_vh):
                        S(h_version).add(
                            h_version.row(
                                vrow,
                                c_at + k * HOUR,
                                f"version {number} {v_kind}",
                                "+" if k == 0 else "~",
                                self.actor("worker"),
                            )
                        )
                    for c_no, (
                        ln,
                        prod_pk,
                        sku,
                        kind,
                        period,
                        qty,
                        price,
                        disc,
                        amount,
                    ) in enumerate(recurring[:2]):
                        cline_pk = version_pk * 4 + c_no
                        S(t_cline).add(
                            t_cline.row(
                                id=cline_pk,
                                version_id=version_pk,
                                line_no=ln,
                                product_id=prod_pk,
                                product_code=sku,
                                description=sku,
                                kind=kind,
                                quantity=qty,
                                unit_price=price,
                                discount_percent=disc,
                                billing_period=period,
                                term_start=start,
                                term_end=end,
                                amount=f"{amount:.2f}",
                            )
                        )
            # invoices for what went live
            if "active" in reached:
                for k in range(rng.choices([1, 2], weights=[75, 25])[0]):
                    invoice_pk = pk * 2 + k
                    issued = (at_of["active"] + k * 30 * DAY).date()
                    if issued > NOW.date():
                        break
                    old = (NOW.date() - issued).days
                    inv_state = (
                        rng.choices(
                            ["paid", "posted", "partially_paid", "void"], weights=[80, 8, 4, 2]
                        )[0]
                        if old > 45
                        else rng.choices(
                            ["draft", "posted", "paid", "partially_paid"], weights=[10, 55, 30, 5]
                        )[0]
                    )
                    paid = (
                        total
                        if inv_state == "paid"
                        else round(total / 2, 2)
                        if inv_state == "partially_paid"
                        else 0
                    )
                    posted_at = at_of["active"] + k * 30 * DAY + HOUR
                    number = f"INV-{issued.year}-{invoice_pk:07d}"
                    irow = t_invoice.row(
                        id=invoice_pk,
                        enterprise_id=format_identifier("INV", invoice_pk),
                        created_at=posted_at - HOUR,
                        updated_at=posted_at,
                        state_changed_at=posted_at,
                        number=number if inv_state != "draft" else "",
                        account_id=account,
                        legal_entity_id=entity,
                        contract_id=contract_ids[0] if contract_ids else None,
                        order_id=pk,
                        currency=currency,
                        issue_date=issued,
                        due_date=issued + dt.timedelta(days=30),
                        total_amount=total_s,
                        tax_amount=f"{total * 0.2:.2f}",
                        amount_paid=f"{paid:.2f}",
                        state=inv_state,
                        posted_at=posted_at if inv_state != "draft" else None,
                        void_reason="issued twice" if inv_state == "void" else "",
                    )
                    S(t_invoice).add(irow)
                    iline_pk = invoice_pk
                    S(t_iline).add(
                        t_iline.row(
                            id=iline_pk,
                            invoice_id=invoice_pk,
                            line_no=1,
                            product_id=lines[0][1],
                            description=lines[0][2],
                            quantity=1,
                            unit_price=total_s,
                            amount=total_s,
                        )
                    )
                    i_life = [("draft", posted_at - HOUR)]
                    if inv_state != "draft":
                        i_life.append(("posted", posted_at))
                    if inv_state in ("paid", "partially_paid", "void"):
                        i_life.append((inv_state, posted_at + 20 * DAY * rng.random()))
                    for st, when, touch in fit(rng, i_life, per_invoice()):
                        who, why = {
                            "draft": ("connector:billing", "invoice.posted from billing"),
                            "posted": ("connector:billing", "invoice.posted from billing"),
                            "paid": ("connector:payments", "payment.received from payments"),
                            "partially_paid": (
                                "connector:payments",
                                "payment.received from payments",
                            ),
                            "void": ("person", "issued twice"),
                        }[st]
                        if touch:
                            who, why = "person", "due date corrected"
                        S(h_invoice).add(
                            h_invoice.row(
                                irow,
                                when,
                                why,
                                "+" if st == "draft" and not touch else "~",
                                self.actor(who, "finance_ops"),
                                state=st,
                                state_changed_at=when,
                            )
                        )
                    if inv_state != "draft":
                        self.xid(
                            xbase + pk * 8 + 3 + k,
                            "billing",
                            "invoice",
                            f"in_{invoice_pk:014x}",
                            "invoice",
                            invoice_pk,
                            format_identifier("INV", invoice_pk),
                        )
            # the workflow, its calls and events: for the most recent slice of orders
            if i >= run_cut:
                run_pk = pk
                stop = step_stop.get(state) or step_stop.get(held_from or "", 3)
                r_state = (
                    "completed"
                    if stop == 12
                    else "paused"
                    if state == "on_hold"
                    else "cancelled"
                    if state in ("cancelled", "rejected")
                    else "waiting"
                    if state == "submitted_to_erp"
                    else "running"
                )
                current = steps_def[min(stop, 11)][0] if r_state != "completed" else ""
                rrow = t_run.row(
                    id=run_pk,
                    kind="quote_to_cash",
                    subject_id=eid,
                    subject_version=1,
                    order_id=pk,
                    state=r_state,
                    current_step=current,
                    created_at=created,
                    updated_at=state_at,
                    completed_at=state_at if r_state in ("completed", "cancelled") else None,
                )
                S(t_run).add(rrow)
                S(h_run).add(
                    h_run.row(
                        rrow,
                        created,
                        "start quote_to_cash",
                        "+",
                        self.actor("worker"),
                        state="running",
                    )
                )
                if r_state != "running":
                    S(h_run).add(
                        h_run.row(rrow, state_at, f"run {r_state}", "~", self.actor("worker"))
                    )
                step_pks: list[int] = []
                t = created + 2 * 1000 * 1000 * dt.timedelta(microseconds=1)
                for pos, (name, system) in enumerate(steps_def):
                    step_pk = pk * 16 + pos
                    step_pks.append(step_pk)
                    if pos < stop - 1 or (pos == stop - 1 and stop == 12):
                        st = "succeeded"
                    elif pos == stop - 1:
                        st = (
                            "failed"
                            if state == "on_hold"
                            else "waiting"
                            if name == "await_financial_acceptance"
                            else "running"
                        )
                    else:
                        st = "pending"
                    started_at = t if st != "pending" else None
                    run_ms = rng.randint(30, 900)
                    finished = (
                        t + dt.timedelta(milliseconds=run_ms)
                        if st in ("succeeded", "failed")
                        else None
                    )
                    S(t_step).add(
                        t_step.row(
                            id=step_pk,
                            run_id=run_pk,
                            name=name,
                            position=pos,
                            system=system,
                            state=st,
                            idempotency_key=f"{eid}:{name}:v1",
                            attempts=1 if started_at else 0,
                            enqueued_at=started_at,
                            started_at=started_at,
                            finished_at=finished,
                            last_error="HTTP 503 from upstream" if st == "failed" else "",
                            result=Jsonb(
                                {"external_id": f"{system}-{pk}"}
                                if st == "succeeded" and name in ops
                                else {}
                            ),
                        )
                    )
                    if name in ops and started_at:
                        sys_, op, method, path = ops[name]
                        attempts = rng.choices([1, 2, 3], weights=[85, 10, 5])[0]
                        for attempt in range(1, attempts + 1):
                            call_pk = pk * 64 + pos * 4 + attempt
                            ok = (st == "succeeded" and attempt == 1) or rng.random() < 0.5
                            S(t_call).add(
                                t_call.row(
                                    id=call_pk,
                                    system=sys_,
                                    operation=op,
                                    method=method,
                                    path=path,
                                    idempotency_key=f"{eid}:{name}:v1",
                                    status_code=201 if ok else rng.choice([429, 502, 503, 422]),
                                    outcome="ok" if ok else "retryable",
                                    error_class="" if ok else "HTTPError",
                                    latency_ms=rng.randint(40, 1800),
                                    attempt=attempt,
                                    correlation_id=eid,
                                    request_body=json.dumps(
                                        {"order": eid, "lines": n_lines, "customer": "[redacted]"}
                                    ),
                                    response_body=json.dumps({"id": f"{sys_}-{pk}"}),
                                    created_at=t + attempt * dt.timedelta(seconds=2),
                                )
                            )
                    if finished:
                        t = finished + dt.timedelta(milliseconds=rng.randint(5, 400))
                for j, (ev_type, system, canonical, when) in enumerate(
                    (
                        ("quote.approved", "cpq", "quote.approved", created - MINUTE),
                        ("salesorder.approved", "erp", "order.accepted", at_of.get("accepted")),
                    )
                ):
                    if when is None:
                        continue
                    event_pk = pk * 2 + j
                    S(t_event).add(
                        t_event.row(
                            id=event_pk,
                            system=system,
                            event_id=f"evt_{system}_{pk:09d}",
                            event_type=ev_type,
                            canonical_type=canonical,
                            schema_version="1",
                            received_at=when,
                            signature_valid=True,
                            status="processed",
                            raw_body=json.dumps({"type": ev_type, "id": eid}),
                            headers=Jsonb({"content-type": "application/json"}),
                            correlation_id=eid,
                            processed_at=when + dt.timedelta(seconds=1),
                        )
                    )
            if pk % 100_000 == 0:
                self.say(f"  {pk:,} orders")

    def exceptions(self) -> None:
        from core.problems import CATEGORY_OWNER, CATEGORY_SLA
        from exceptions.models import OperationalException

        rng = self.rng
        t_exc = Table(OperationalException)
        h_exc = History(t_exc)
        S = self.streams.table
        n = self.scale.exceptions
        per = _history_counts(rng, int(self.scale.history * HISTORY_SHARE["exception"]), n)
        kinds = [  # (category, severity, system, step, error class, message)
            (
                "downstream_api",
                "high",
                "erp",
                "create_erp_order",
                "ServiceUnavailable",
                "ERP answered 503 Service Unavailable after 5 attempts",
            ),
            (
                "downstream_api",
                "high",
                "billing",
                "create_subscription",
                "RateLimited",
                "billing answered 429 Too Many Requests after 5 attempts",
            ),
            (
                "downstream_api",
                "medium",
                "erp",
                "send_one_time_lines",
                "Timeout",
                "ERP did not answer within 10 s",
            ),
            (
                "downstream_api",
                "critical",
                "billing",
                "upsert_customer_billing",
                "AuthFailed",
                "billing refused the API key (401)",
            ),
            (
                "mapping",
                "medium",
                "erp",
                "map_products",
                "UnmappedProduct",
                "product {sku} has no erp item",
            ),
            (
                "mapping",
                "medium",
                "billing",
                "map_products",
                "UnmappedProduct",
                "product {sku} has no billing plan",
            ),
            (
                "master_data",
                "high",
                "",
                "resolve_customer",
                "AmbiguousCustomer",
                "customer matches 2 accounts by name",
            ),
            (
                "master_data",
                "medium",
                "",
                "resolve_customer",
                "CustomerInvalid",
                "customer cannot be created: country is missing",
            ),
            (
                "tax",
                "high",
                "tax",
                "check_tax_and_entity",
                "LegalEntityIncomplete",
                "legal entity {le} has no tax registration",
            ),
            (
                "tax",
                "medium",
                "tax",
                "check_tax_and_entity",
                "AddressInvalid",
                "tax service rejected the address postcode",
            ),
            (
                "validation",
                "medium",
                "",
                "validate_quote",
                "QuoteInvalid",
                "quote has a line with a negative discount",
            ),
            (
                "duplicate_event",
                "low",
                "cpq",
                "",
                "DuplicateEvent",
                "quote.approved delivered again with a different body",
            ),
            (
                "configuration",
                "critical",
                "erp",
                "create_erp_order",
                "ConfigurationError",
                "ERP base URL is not set",
            ),
        ]
        weights = [30, 14, 8, 2, 8, 6, 6, 3, 5, 4, 6, 5, 1]
        people = {team: [self.users[u] for u in names] for team, names in PEOPLE.items()}
        run_cut = run_cut_of(self.scale)
        from core.identifiers import format_identifier

        for pk in range(1, n + 1):
            cat, sev, system, step, err, msg = rng.choices(kinds, weights=weights)[0]
            team = CATEGORY_OWNER[cat]
            fp = hashlib.sha256(f"{system}|{err}|{step}".encode()).hexdigest()[:32]
            order_pk: int | None
            eid = ""
            run_pk = step_pk = None
            if run_cut < self.scale.orders and rng.random() < 0.7:
                order_pk = rng.randint(run_cut + 1, self.scale.orders)
                eid = format_identifier("ORD", order_pk)
                run_pk = order_pk
                step_pk = order_pk * 16 + STEP_NAMES.index(step) if step in STEP_NAMES else None
            elif rng.random() < 0.9:
                order_pk = rng.randint(1, self.scale.orders)
                eid = format_identifier("ORD", order_pk)
            else:
                order_pk = None
            # newest exceptions are the open ones; most older ones were resolved
            created = NOW - 400 * DAY * (1 - rng.random() ** 0.5)
            age = NOW - created
            if age < 2 * DAY:
                state = rng.choices(["open", "retrying", "resolved", "ignored"], [60, 5, 30, 5])[0]
            else:
                state = rng.choices(["open", "retrying", "resolved", "ignored"], [6, 0.5, 83, 10])[
                    0
                ]
            assignee = rng.choice(people.get(team, [None])) if rng.random() < 0.5 else None
            closed = state in ("resolved", "ignored")
            resolved_at = created + age * rng.random() * 0.3 if closed else None
            code = (
                rng.choice(["retry_succeeded", "fixed_at_source", "data_corrected", "duplicate"])
                if state == "resolved"
                else "ignored"
                if state == "ignored"
                else ""
            )
            row = t_exc.row(
                id=pk,
                category=cat,
                severity=sev,
                owner_team=team,
                assignee_id=assignee,
                state=state,
                system=system,
                step=step,
                error_class=err,
                message=msg.format(sku=rng.choice(self.products)[1], le="TDM-DE"),
                context=Jsonb({"order": eid, "step": step, "attempts": 5}),
                fingerprint=fp,
                correlation_id=eid,
                order_id=order_pk,
                workflow_run_id=run_pk,
                step_run_id=step_pk,
                created_at=created,
                sla_due_at=created + CATEGORY_SLA[cat],
                resolved_at=resolved_at,
                resolution_code=code,
                resolution_note="fixed after upstream recovered" if closed else "",
            )
            S(t_exc).add(row)
            life = [("open", created, "worker", f"step {step or 'intake'} failed")]
            if assignee:
                life.append(("open", created + age * 0.05, "person", "assigned"))
            if state == "retrying" or (closed and code == "retry_succeeded"):
                life.append(("retrying", created + age * 0.1, "person", "retry after outage"))
            if closed:
                why = "retry succeeded" if code == "retry_succeeded" else "resolved by operator"
                who = "worker" if code == "retry_succeeded" else "person"
                life.append((state, resolved_at or NOW, who, why))
            rows = per()
            kept = life[-rows:] if rows else []
            while len(kept) < rows:
                kept.insert(
                    1 if len(kept) > 1 else len(kept),
                    ("open", created + age * 0.02 * rng.random(), "person", "comment"),
                )
            for k, (st, when, who, why) in enumerate(kept):
                S(h_exc).add(
                    h_exc.row(
                        row,
                        when,
                        why,
                        "+" if k == 0 else "~",
                        self.actor(who, team),
                        state=st,
                    )
                )

    def sequences_reset(self) -> None:
        """Point every sequence past the seeded ids and the identifier counters at the
        last number used, so the application keeps allocating from there."""
        from core.identifiers import IdentifierCounter

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a "
                "ON a.attrelid = c.oid JOIN pg_attrdef d ON d.adrelid = c.oid AND "
                "d.adnum = a.attnum WHERE c.relkind = 'r' AND "
                "pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval%%' "
                "UNION SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a "
                "ON a.attrelid = c.oid WHERE c.relkind = 'r' AND a.attidentity <> ''"
            )
            for table, column in cursor.fetchall():
                last = f'SELECT max("{column}") FROM "{table}"'  # noqa: S608 (catalog names)
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, %s), "
                    f"COALESCE(({last}), 0) + 1, false)",
                    [f'"{table}"', column],
                )
        for prefix, table in (
            ("ACC", "masterdata_account"),
            ("ORD", "q2c_order"),
            ("QTE", "q2c_quote"),
            ("CTR", "q2c_contract"),
            ("INV", "q2c_invoice"),
            ("LE", "masterdata_legalentity"),
            ("PRD", "masterdata_product"),
        ):
            with connection.cursor() as cursor:
                cursor.execute(f'SELECT COALESCE(max(id), 0) FROM "{table}"')  # noqa: S608
                (last,) = cursor.fetchone()
            IdentifierCounter.objects.update_or_create(prefix=prefix, defaults={"last_value": last})


_CURRENT: Seeder | None = None


def _seed_job(job: tuple[str, int, int]) -> dict[str, int]:
    """One range of orders, or all the exceptions, in a forked child (see Seeder.parallel)."""
    kind, first, last = job
    seeder = _CURRENT
    assert seeder is not None
    seeder.rng = FastRandom(seeder.seed * 7919 + first)
    seeder.streams = Streams()
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    if kind == "orders":
        seeder.orders(first, last)
    else:
        seeder.exceptions()
    counts = seeder.streams.flush()
    connection.close()
    return counts


def batched(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for x in it:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
