"""``ErpApi`` for Tryton 8.2 over its JSON-RPC HTTP interface (``requests``, no Tryton client).

Select it with ``CONNECTOR_ERP_IMPLEMENTATION=orchestration.connectors.tryton.erp.TrytonErp``;
``CONNECTOR_ERP_BASE_URL`` is the database's URL (``http://erp.example.com:8000/<database>/``),
the user comes from ``CONNECTOR_ERP_LOGIN`` and ``CONNECTOR_ERP_PASSWORD`` (or ``*_FILE``),
read when a session is opened and never stored.

Sessions: ``common.db.login`` gives a token, sent as ``Authorization: Session …`` (Basic auth
would re-check the password on every call). One session per process and user is cached; a
401 drops it, logs in again and retries the call once.

Records and references:
- a customer is a ``party.party`` whose code is Tandem's enterprise id, with that id (and the
  CRM id, when known) as untyped party identifiers; ``customer_find`` searches the
  identifiers; Tryton's unique party code makes a second create of it fail;
- a product is a service ``product.product`` whose code is the ERP mapping's external id
  (``ProductMapping`` for system ``erp``); it is created on first use in the account
  category ``settings.TRYTON_ACCOUNT_CATEGORY``, whose customer taxes the lines carry;
- a sales order is a ``sale.sale`` whose ``reference`` is the order's enterprise id, created
  and quoted (and confirmed when ``settings.TRYTON_CONFIRM_SALES``); its acceptance (state
  confirmed or processing) is read back by polling (``poll``), never assumed;
- an invoice is an ``account.invoice`` whose ``reference`` is Tandem's; its lines point at
  the sale's lines (``origin``) so Tryton counts them as the sale's invoicing, and it is
  posted (posting warnings are acknowledged as the Tryton client would).

Every create is preceded by a search on the reference (the workflow calls ``*_find`` first),
so a create whose answer was lost is found instead of made twice. A search cannot see a
create that is still running in Tryton (its answer timed out, its transaction has not
committed), and Tryton has no unique constraint on references: so after a create with the
same idempotency key got no answer, no second one is sent until
``settings.TRYTON_SETTLE_SECONDS`` have passed (the step waits, without using up an
attempt, and looks again). Tryton answers business
errors with HTTP 200 and ``{"error": ["UserError", [message, description]]}``: they are
permanent, with Tryton's message; a concurrent write is retryable; 429 and 5xx are
retryable through the transport.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.env import envstr
from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import (
    ErpApi,
    Party,
    PollBatch,
    Rechecking,
    RemoteLine,
    RemoteRecord,
)
from orchestration.connectors.transport import Transport
from orchestration.models import OutboundCall, OutboundOutcome

SYSTEM = "erp"
RPC_PATH = "rpc/"  # relative to the database URL
ACCEPTED_STATES = ("confirmed", "processing", "done")
POSTED_STATES = ("posted", "paid")
POLL_PAGE = 100
RECHECK_PAGES = 10  # the look-back re-reads at most this many pages per stream and poll
ENTERPRISE_ID = re.compile(r"^[A-Z]{2,4}-\d{6,}$")
TRYTON_ERRORS = {"UserError", "ConcurrencyException", "LoginException", "RateLimitException"}
RETRYABLE_RPC_ERRORS = {"ConcurrencyException", "RateLimitException"}
# UserErrors that mean a concurrent write won, not that the request is wrong.
RACE_MESSAGES = re.compile(r"must be unique\.?$|^You can not call \"")
# Transport error classes of a request that was sent but got no answer: it may still commit.
UNANSWERED = ("timeout", "connection_error")


# --- JSON-RPC values -------------------------------------------------------------------------
def rpc_encode(value: Any) -> Any:
    """Tryton's JSON for Decimal and dates (its ``JSONEncoder``); anything else unchanged."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": format(value, "f")}
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {key: rpc_encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rpc_encode(item) for item in value]
    return value


def rpc_decode(value: Any) -> Any:
    """The inverse of ``rpc_encode`` for what Tryton answers (datetimes are naive UTC)."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return dt.datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
                tzinfo=dt.UTC,
            )
        if kind == "bytes":
            return base64.b64decode(value.get("base64", ""))
        return {key: rpc_decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rpc_decode(item) for item in value]
    return value


def rpc_error(body: Any) -> tuple[str, str, str] | None:
    """Class an HTTP 200 JSON-RPC answer that carries an error: (outcome, class, message).

    Tryton's own exceptions come as ``[name, args]``: ``UserError`` (args: message,
    description, domain) and ``UserWarning`` (args: warning name, message, description) are
    permanent, ``ConcurrencyException`` is retryable. Any other server exception comes as
    ``[str(exception), traceback]``: a server error, retryable like an HTTP 500, and only its
    first line is kept (never the traceback).
    """
    if not isinstance(body, dict) or body.get("error") is None:
        return None
    error = body["error"]
    if not isinstance(error, list) or not error:
        return OutboundOutcome.RETRYABLE, "server_error", str(error)[:200]
    name = str(error[0])
    args = error[1] if len(error) > 1 and isinstance(error[1], list) else []
    texts = [str(part) for part in args if isinstance(part, str) and part]
    if name == "UserWarning":
        # the warning's name is what ``res.user.warning.skip`` takes to acknowledge it
        warning, message = (texts[0], " — ".join(texts[1:3])) if texts else ("", name)
        return (
            OutboundOutcome.PERMANENT,
            "user_warning",
            f"{message[:400]} [warning: {warning[:90]}]",
        )
    if name == "UserError" and texts and RACE_MESSAGES.search(texts[0]):
        # Lost to a concurrent writer (two workers numbering or creating at once, a retry
        # racing the attempt whose answer timed out): the step's retry looks the record up
        # again and finds how things stand.
        return OutboundOutcome.RETRYABLE, "conflict", " — ".join(texts[:2])[:500]
    if name in TRYTON_ERRORS:
        outcome = (
            OutboundOutcome.RETRYABLE if name in RETRYABLE_RPC_ERRORS else OutboundOutcome.PERMANENT
        )
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # UserError -> user_error
        return outcome, kind, (" — ".join(texts[:2]) or name)[:500]
    return OutboundOutcome.RETRYABLE, "server_error", name.splitlines()[0][:200]


WARNING_NAME = re.compile(r"\[warning: (?P<name>[^\]]+)\]$")


# --- sessions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    user_id: int
    authorization: str
    context: dict[str, Any]


_sessions: dict[tuple[str, str], Session] = {}
_sessions_lock = threading.Lock()


def sessions_forget() -> None:
    """Drop every cached session (a process that forks, or a test)."""
    with _sessions_lock:
        _sessions.clear()


class TrytonErp:
    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport.for_system(SYSTEM)
        self._cache: dict[str, Any] = {}

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def login(self) -> str:
        return envstr("CONNECTOR_ERP_LOGIN", "")

    def _session_key(self) -> tuple[str, str]:
        return (self.transport.config.base_url, self.login)

    def session(self) -> Session:
        """The cached session of this process, or a new one."""
        key = self._session_key()
        with _sessions_lock:
            cached = _sessions.get(key)
        if cached is not None:
            return cached
        login, password = self.login, envstr("CONNECTOR_ERP_PASSWORD", "")
        if not login or not password:
            raise PermanentError(
                "CONNECTOR_ERP_LOGIN and CONNECTOR_ERP_PASSWORD must be set for Tryton",
                system=SYSTEM,
                kind="auth",
            )
        response = self.transport.call(
            operation="login",
            method="POST",
            path=RPC_PATH,
            json={
                "id": 1,
                "method": "common.db.login",
                "params": [login, {"password": password}, "en"],
            },
            body_error=rpc_error,
            response_secret=True,
        )
        result = response.body.get("result") if isinstance(response.body, dict) else None
        if not isinstance(result, list) or len(result) < 2:
            raise PermanentError("Tryton refused the login", system=SYSTEM, kind="auth")
        user_id, token = int(result[0]), str(result[1])
        secret = base64.b64encode(f"{login}:{user_id}:{token}".encode()).decode()
        authorization = f"Session {secret}"
        preferences = self._call(
            "preferences", "model.res.user.get_preferences", [True], authorization, context={}
        )
        context = {
            key: preferences[key]
            for key in ("company", "language", "companies", "employee", "employees")
            if key in preferences
        }
        session = Session(user_id=user_id, authorization=authorization, context=context)
        with _sessions_lock:
            _sessions[key] = session
        return session

    def _call(
        self,
        operation: str,
        method: str,
        params: list[Any],
        authorization: str,
        *,
        context: dict[str, Any],
        idempotency_key: str = "",
    ) -> Any:
        response = self.transport.call(
            operation=operation,
            method="POST",
            path=RPC_PATH,
            json={"id": 1, "method": method, "params": rpc_encode([*params, context])},
            headers={"Authorization": authorization},
            idempotency_key=idempotency_key,
            body_error=rpc_error,
        )
        return rpc_decode(response.body.get("result"))

    def rpc(
        self,
        operation: str,
        method: str,
        params: list[Any],
        *,
        idempotency_key: str = "",
        context: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` with the session's context last; a 401 renews the session once."""
        session = self.session()
        try:
            return self._call(
                operation,
                method,
                params,
                session.authorization,
                context={**session.context, **(context or {})},
                idempotency_key=idempotency_key,
            )
        except PermanentError as exc:
            if exc.status != 401:
                raise
        with _sessions_lock:
            if _sessions.get(self._session_key()) is session:
                del _sessions[self._session_key()]
        session = self.session()
        return self._call(
            operation,
            method,
            params,
            session.authorization,
            context={**session.context, **(context or {})},
            idempotency_key=idempotency_key,
        )

    def button(self, model: str, name: str, ids: list[int], *, operation: str = "") -> None:
        """Click a workflow button, acknowledging a warning once (as the Tryton client does)."""
        try:
            self.rpc(operation or f"{model.split('.')[-1]}_{name}", f"model.{model}.{name}", [ids])
        except PermanentError as exc:
            match = WARNING_NAME.search(exc.message)
            if exc.kind != "user_warning" or match is None:
                raise
            self.rpc("warning_skip", "model.res.user.warning.skip", [match["name"]])
            self.rpc(operation or f"{model.split('.')[-1]}_{name}", f"model.{model}.{name}", [ids])

    def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: list[str],
        *,
        operation: str,
        limit: int | None = None,
        order: list[list[str]] | None = None,
    ) -> list[dict[str, Any]]:
        rows = self.rpc(operation, f"model.{model}.search_read", [domain, 0, limit, order, fields])
        return list(rows or [])

    def _settled(self, operation: str, idempotency_key: str) -> None:
        """Raise a waiting ``RetryableError`` while an earlier ``operation`` with this key that
        got no answer may still commit (see the module's docstring)."""
        settle = float(settings.TRYTON_SETTLE_SECONDS)
        if not idempotency_key or settle <= 0:
            return
        now = timezone.now()
        sent = (
            OutboundCall.objects.filter(
                system=SYSTEM,
                operation=operation,
                idempotency_key=idempotency_key,
                error_class__in=UNANSWERED,
                created_at__gte=now - dt.timedelta(seconds=settle),
            )
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if sent is None:
            return
        wait = max(1, math.ceil((sent + dt.timedelta(seconds=settle) - now).total_seconds()))
        raise RetryableError(
            f"an earlier {operation} sent at {sent.astimezone(dt.UTC):%H:%M:%S} UTC got no "
            f"answer and may still commit in Tryton; looking again in {wait} s",
            system=SYSTEM,
            kind="outcome_unknown",
            retry_after=wait,
            waiting=True,
        )

    def _one(self, model: str, domain: list[Any], what: str) -> int:
        key = f"{model}:{domain!r}"
        if key not in self._cache:
            found = self.rpc(
                f"{model.split('.')[-1]}_lookup", f"model.{model}.search", [domain, 0, 1, None]
            )
            if not found:
                raise PermanentError(f"Tryton has no {what}", system=SYSTEM, kind="not_found")
            self._cache[key] = int(found[0])
        return int(self._cache[key])

    # --- customers --------------------------------------------------------------------------
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        rows = self.search_read(
            "party.party",
            [["identifiers.code", "=", reference]],
            ["id", "code", "name", "active", "addresses"],
            operation="customer_find",
            limit=1,
        )
        return party_record(rows[0], reference) if rows else None

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        self._settled("customer_create", idempotency_key)
        identifiers = [{"type": None, "code": party.reference}]
        if party.crm_id:
            identifiers.append({"type": None, "code": party.crm_id})
        address: dict[str, Any] = {
            "street": party.address_line1 or None,
            "city": party.city or None,
            "postal_code": party.postcode or None,
        }
        created = self.rpc(
            "customer_create",
            "model.party.party.create",
            [
                [
                    {
                        "name": party.name,
                        # Tandem's id as the party's code: Tryton keeps codes unique, so a
                        # second create of the same customer is refused, and no party waits
                        # on (or races for) the party sequence.
                        "code": party.reference,
                        "identifiers": [["create", identifiers]],
                        "addresses": [["create", [address]]],
                    }
                ]
            ],
            idempotency_key=idempotency_key,
        )
        found = self.customer_find(reference=party.reference)
        if found is None or found.id != str(created[0]):
            raise RetryableError(
                f"party {created[0]} is not searchable by {party.reference} yet",
                system=SYSTEM,
                kind="inconsistent",
            )
        return found

    # --- products ---------------------------------------------------------------------------
    def product_find(self, *, code: str) -> dict[str, Any] | None:
        rows = self.search_read(
            "product.product",
            [["code", "=", code]],
            ["id", "code", "account_category"],
            operation="product_find",
            limit=1,
        )
        if not rows:
            return None
        # A product's customer taxes are its accounting category's (a property in Tryton,
        # readable only on the category).
        category = rows[0].get("account_category")
        return {**rows[0], "customer_taxes_used": self._category_taxes(category)}

    def _category_taxes(self, category_id: int | None) -> list[int]:
        if category_id is None:
            return []
        key = f"taxes:{category_id}"
        if key not in self._cache:
            rows = self.rpc(
                "category_read",
                "model.product.category.read",
                [[int(category_id)], ["customer_taxes_used"]],
            )
            self._cache[key] = [int(tax) for tax in rows[0]["customer_taxes_used"]]
        return list(self._cache[key])

    def product_ensure(self, *, code: str, name: str, list_price: Decimal) -> dict[str, Any]:
        """The service product whose code is ``code`` (an ERP ProductMapping's external id)."""
        found = self.product_find(code=code)
        if found is not None:
            return found
        unit = self._one("product.uom", [["name", "=", "Unit"]], "unit of measure 'Unit'")
        category = self._one(
            "product.category",
            [["name", "=", settings.TRYTON_ACCOUNT_CATEGORY], ["accounting", "=", True]],
            f"accounting category {settings.TRYTON_ACCOUNT_CATEGORY!r}",
        )
        self.rpc(
            "product_create",
            "model.product.template.create",
            [
                [
                    {
                        "name": name or code,
                        "code": code,
                        "type": "service",
                        "salable": True,
                        "default_uom": unit,
                        "sale_uom": unit,
                        "list_price": list_price,
                        "account_category": category,
                        "products": [["create", [{}]]],
                    }
                ]
            ],
        )
        found = self.product_find(code=code)
        if found is None:
            raise RetryableError(
                f"product {code} is not searchable yet", system=SYSTEM, kind="inconsistent"
            )
        return found

    # --- sales orders -----------------------------------------------------------------------
    def sales_order_find(self, *, reference: str) -> RemoteRecord | None:
        """The sale with ``reference``. A sale still in draft is one whose create answered
        nothing (the answer was lost before the quote): it is quoted now, as the create
        would have done, so the step that finds it goes on exactly as after a create."""
        rows = self.search_read(
            "sale.sale",
            [["reference", "=", reference]],
            SALE_FIELDS,
            operation="sales_order_find",
            limit=1,
            order=[["id", "ASC"]],
        )
        if not rows:
            return None
        if rows[0]["state"] == "draft":
            return self._sale_submit(int(rows[0]["id"]))
        return sale_record(rows[0])

    def _sale_submit(self, sale_id: int) -> RemoteRecord:
        self.button("sale.sale", "quote", [sale_id], operation="sales_order_quote")
        if settings.TRYTON_CONFIRM_SALES:
            return self.sales_order_confirm(sales_order_id=str(sale_id))
        return self._sale(sale_id)

    def sales_order_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        self._settled("sales_order_create", idempotency_key)
        party = self.rpc(
            "customer_read", "model.party.party.read", [[int(customer_id)], ["addresses"]]
        )
        if not party or not party[0]["addresses"]:
            raise PermanentError(
                f"Tryton party {customer_id} has no address", system=SYSTEM, kind="validation"
            )
        address = party[0]["addresses"][0]
        sale_lines = []
        for line in lines:
            product = self.product_ensure(
                code=line.product_ref, name=line.description, list_price=line.unit_price
            )
            sale_lines.append(
                {
                    "type": "line",
                    "product": product["id"],
                    "quantity": float(line.quantity),
                    "unit": self._one("product.uom", [["name", "=", "Unit"]], "unit 'Unit'"),
                    "unit_price": line.unit_price,
                    "description": line.description or line.product_ref,
                    "taxes": [["add", list(product.get("customer_taxes_used") or [])]],
                }
            )
        values = {
            "reference": reference,
            "party": int(customer_id),
            "invoice_address": address,
            "shipment_address": address,
            "sale_date": order_date,
            "currency": self._one(
                "currency.currency",
                [["code", "=", currency.upper()]],
                f"currency {currency.upper()}",
            ),
            "payment_term": self._one("account.invoice.payment_term", [], "payment term"),
            "invoice_method": "manual",
            "lines": [["create", sale_lines]],
        }
        created = self.rpc(
            "sales_order_create",
            "model.sale.sale.create",
            [[values]],
            idempotency_key=idempotency_key,
        )
        return self._sale_submit(int(created[0]))

    def sales_orders_count(self, *, references: list[str]) -> dict[str, int]:
        """How many sales Tryton holds for each reference (a rehearsal's books check)."""
        counts = dict.fromkeys(references, 0)
        for start in range(0, len(references), POLL_PAGE):
            chunk = references[start : start + POLL_PAGE]
            for row in self.search_read(
                "sale.sale", [["reference", "in", chunk]], ["reference"],
                operation="sales_order_count",
            ):  # fmt: skip
                counts[str(row["reference"])] += 1
        return counts

    def sales_order_confirm(self, *, sales_order_id: str) -> RemoteRecord:
        """Confirm and process a quoted sale (what finance does in Tryton to accept it)."""
        self.button("sale.sale", "confirm", [int(sales_order_id)], operation="sales_order_confirm")
        self.button("sale.sale", "process", [int(sales_order_id)], operation="sales_order_process")
        return self._sale(int(sales_order_id))

    def sales_order_cancel(self, *, sales_order_id: str, idempotency_key: str) -> RemoteRecord:
        sale = self._sale(int(sales_order_id))
        if sale.status in ("quotation", "confirmed"):
            self.button("sale.sale", "draft", [int(sales_order_id)], operation="sales_order_draft")
        if sale.status != "cancelled":
            self.button(
                "sale.sale", "cancel", [int(sales_order_id)], operation="sales_order_cancel"
            )
        sale = self._sale(int(sales_order_id))
        if sale.status != "cancelled":
            raise PermanentError(
                f"Tryton keeps sale {sale.number or sales_order_id} {sale.status}: "
                "it is being invoiced; cancel or credit its invoices in Tryton",
                system=SYSTEM,
                kind="validation",
            )
        return sale

    def _sale(self, sale_id: int) -> RemoteRecord:
        rows = self.rpc("sales_order_read", "model.sale.sale.read", [[sale_id], SALE_FIELDS])
        return sale_record(rows[0])

    # --- invoices ---------------------------------------------------------------------------
    def invoice_find(self, *, reference: str) -> RemoteRecord | None:
        """The customer invoice with ``reference``. One still in draft was left by a create
        whose answer was lost before the posting: it is posted now, as the create would."""
        found = self._invoice_by_reference(reference)
        if found is not None and found.status in ("draft", "validated"):
            self.button("account.invoice", "post", [int(found.id)], operation="invoice_post")
            found = self._invoice_by_reference(reference)
        return found

    def _invoice_by_reference(self, reference: str) -> RemoteRecord | None:
        rows = self.search_read(
            "account.invoice",
            [["reference", "=", reference], ["type", "=", "out"]],
            INVOICE_FIELDS,
            operation="invoice_find",
            limit=1,
            order=[["id", "ASC"]],
        )
        return invoice_record(rows[0]) if rows else None

    def invoice_create(
        self,
        *,
        reference: str,
        customer_id: str,
        sales_order_id: str,
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
    ) -> RemoteRecord:
        """Invoice ``lines`` (against the sale's matching lines when ``sales_order_id``) and
        post the invoice. A draft left by a call that failed before posting is posted."""
        if self._invoice_by_reference(reference) is None:
            self._settled("invoice_create", idempotency_key)
            self._invoice_draft(
                reference=reference,
                customer_id=customer_id,
                sales_order_id=sales_order_id,
                currency=currency,
                lines=lines,
                idempotency_key=idempotency_key,
            )
        found = self.invoice_find(reference=reference)  # posts the draft
        if found is None:
            raise RetryableError(
                f"invoice {reference} is not searchable yet", system=SYSTEM, kind="inconsistent"
            )
        return found

    def _invoice_draft(
        self,
        *,
        reference: str,
        customer_id: str,
        sales_order_id: str,
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
    ) -> RemoteRecord:
        sale_lines: dict[str, dict[str, Any]] = {}
        party_id = int(customer_id)
        if sales_order_id:
            sale = self.rpc(
                "sales_order_read",
                "model.sale.sale.read",
                [[int(sales_order_id)], ["party", "lines", "invoice_address"]],
            )[0]
            party_id = int(sale["party"])
            for row in self.rpc(
                "sale_lines_read",
                "model.sale.line.read",
                [sale["lines"], ["id", "product.code", "taxes", "unit"]],
            ):
                sale_lines.setdefault(str((row.get("product.") or {}).get("code") or ""), row)
        party = self.rpc(
            "customer_read",
            "model.party.party.read",
            [[party_id], ["addresses", "account_receivable"]],
        )[0]
        invoice_lines = []
        for line in lines:
            product = self.product_ensure(
                code=line.product_ref, name=line.description, list_price=line.unit_price
            )
            values: dict[str, Any] = {
                "type": "line",
                "product": product["id"],
                "quantity": float(line.quantity),
                "unit": self._one("product.uom", [["name", "=", "Unit"]], "unit 'Unit'"),
                "unit_price": line.unit_price,
                "description": line.description or line.product_ref,
                "account": self._revenue_account(),
                "taxes": [["add", list(product.get("customer_taxes_used") or [])]],
            }
            origin = sale_lines.get(line.product_ref)
            if origin is not None:
                values["origin"] = f"sale.line,{origin['id']}"
            invoice_lines.append(values)
        created = self.rpc(
            "invoice_create",
            "model.account.invoice.create",
            [
                [
                    {
                        "type": "out",
                        "reference": reference,
                        "party": party_id,
                        "invoice_address": party["addresses"][0],
                        "account": party["account_receivable"] or self._default_receivable(),
                        "journal": self._one(
                            "account.journal", [["type", "=", "revenue"]], "revenue journal"
                        ),
                        "currency": self._one(
                            "currency.currency",
                            [["code", "=", currency.upper()]],
                            f"currency {currency.upper()}",
                        ),
                        "payment_term": self._one(
                            "account.invoice.payment_term", [], "payment term"
                        ),
                        "invoice_date": dt.date.today(),
                        "lines": [["create", invoice_lines]],
                    }
                ]
            ],
            idempotency_key=idempotency_key,
        )
        rows = self.rpc(
            "invoice_read", "model.account.invoice.read", [[int(created[0])], INVOICE_FIELDS]
        )
        return invoice_record(rows[0])

    def _default_receivable(self) -> int:
        key = "default_receivable"
        if key not in self._cache:
            rows = self.rpc(
                "configuration_read",
                "model.account.configuration.read",
                [[1], ["default_account_receivable"]],
            )
            if not rows or not rows[0].get("default_account_receivable"):
                raise PermanentError(
                    "Tryton has no default receivable account (Accounting > Configuration)",
                    system=SYSTEM,
                    kind="not_found",
                )
            self._cache[key] = int(rows[0]["default_account_receivable"])
        return int(self._cache[key])

    def _revenue_account(self) -> int:
        key = "revenue_account"
        if key not in self._cache:
            rows = self.search_read(
                "product.category",
                [["name", "=", settings.TRYTON_ACCOUNT_CATEGORY], ["accounting", "=", True]],
                ["account_revenue"],
                operation="category_read",
                limit=1,
            )
            if not rows or not rows[0].get("account_revenue"):
                raise PermanentError(
                    "the Tryton account category has no revenue account",
                    system=SYSTEM,
                    kind="not_found",
                )
            self._cache[key] = int(rows[0]["account_revenue"])
        return int(self._cache[key])

    # --- polling (orchestration.events.polling) ---------------------------------------------
    def poll_streams(self) -> list[str]:
        return ["sales", "invoices", "payments"]

    def poll(self, *, stream: str, cursor: str) -> PollBatch:
        """Changes after ``cursor`` in ``stream`` as canonical events, oldest first."""
        return self._reader(stream)(cursor, None)

    def poll_recheck(self, *, stream: str, cursor: str) -> list[dict[str, Any]]:
        """The changes of the ``settings.TRYTON_POLL_LOOKBACK_SECONDS`` before the cursor.

        Tryton stamps ``write_date`` when the transaction writes (with PostgreSQL, when it
        began), and the write becomes visible when it commits: a long transaction can
        commit after the cursor moved past its stamp. Re-reading this window (at most
        ``RECHECK_PAGES`` pages) finds it; ``orchestration.events.polling`` absorbs the rest."""
        after, _ = cursor_parse(cursor)
        lookback = float(settings.TRYTON_POLL_LOOKBACK_SECONDS)
        if after is None or lookback <= 0:
            return []
        reader = self._reader(stream)
        position = cursor_format(after - dt.timedelta(seconds=lookback), 0)
        events: list[dict[str, Any]] = []
        for _page in range(RECHECK_PAGES):
            batch = reader(position, after)
            events.extend(batch.events)
            if batch.cursor == position:
                break
            position = batch.cursor
        return events

    def _reader(self, stream: str) -> Any:
        reader = {
            "sales": self._poll_sales,
            "invoices": self._poll_invoices,
            "payments": self._poll_payments,
        }.get(stream)
        if reader is None:
            raise PermanentError(
                f"Tryton has no poll stream {stream!r}", system=SYSTEM, kind="not_found"
            )
        return reader

    def _changed_since(
        self,
        model: str,
        cursor: str,
        domain: list[Any],
        fields: list[str],
        operation: str,
        until: dt.datetime | None,
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of rows written after ``cursor`` (and not after ``until``), oldest first."""
        after, after_id = cursor_parse(cursor)
        window: list[Any] = []
        if after is not None:
            window = [
                [
                    "OR",
                    [["write_date", ">", after]],
                    [["write_date", "=", after], ["id", ">", after_id]],
                ]
            ]
        if until is not None:
            window.append(["write_date", "<=", until])
        rows = self.search_read(
            model,
            [["write_date", "!=", None], *domain, *window],
            [*fields, "write_date"],
            operation=operation,
            limit=POLL_PAGE,
            order=[["write_date", "ASC"], ["id", "ASC"]],
        )
        next_cursor = cursor_format(rows[-1]["write_date"], rows[-1]["id"]) if rows else cursor
        return rows, next_cursor

    def _poll_sales(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        rows, next_cursor = self._changed_since(
            "sale.sale",
            cursor,
            [["state", "in", list(ACCEPTED_STATES)]],
            SALE_FIELDS,
            "poll_sales",
            until,
        )
        events = []
        for row in rows:
            reference = str(row.get("reference") or "")
            if not ENTERPRISE_ID.match(reference):
                continue  # not a sale Tandem made
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-sale-{row['id']}-accepted",
                    "event_type": "order.accepted",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": reference,
                    "data": {
                        "order_id": reference,
                        "erp_sales_order_id": str(row["id"]),
                        "accepted_at": stamp,
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _poll_invoices(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        rows, next_cursor = self._changed_since(
            "account.invoice",
            cursor,
            [["type", "=", "out"], ["state", "in", list(POSTED_STATES)]],
            INVOICE_FIELDS,
            "poll_invoices",
            until,
        )
        line_ids = [line_id for row in rows for line_id in row.get("lines") or []]
        lines_by_id: dict[int, dict[str, Any]] = {}
        if line_ids:
            for line in self.rpc(
                "invoice_lines_read",
                "model.account.invoice.line.read",
                [
                    line_ids,
                    ["id", "description", "quantity", "unit_price", "amount", "product.code"],
                ],
            ):
                lines_by_id[int(line["id"])] = line
        events = []
        for row in rows:
            order_id = _order_reference(str(row.get("reference") or ""))
            lines = [lines_by_id[i] for i in row.get("lines") or [] if i in lines_by_id]
            if order_id is None or not lines:
                continue  # not an invoice Tandem asked for
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-invoice-{row['id']}-posted",
                    "event_type": "invoice.posted",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": order_id,
                    "data": {
                        "external_invoice_id": str(row["id"]),
                        "invoice_number": str(row.get("number") or row["id"]),
                        "order_id": order_id,
                        "currency": _currency_code(row),
                        "total_amount": _money(row.get("total_amount")),
                        "tax_amount": _money(row.get("tax_amount")),
                        "issue_date": (row.get("invoice_date") or dt.date.today()).isoformat(),
                        "lines": [
                            {
                                "description": str(line.get("description") or "line"),
                                "product_code": str((line.get("product.") or {}).get("code") or ""),
                                "quantity": _money(Decimal(str(line.get("quantity") or 0))),
                                "unit_price": _money(line.get("unit_price")),
                                "amount": _money(line.get("amount")),
                            }
                            for line in lines
                        ],
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)

    def _poll_payments(self, cursor: str, until: dt.datetime | None) -> PollBatch:
        """Customer invoices paid in full in Tryton, as ``payment.received`` of their total."""
        rows, next_cursor = self._changed_since(
            "account.invoice",
            cursor,
            [["type", "=", "out"], ["state", "=", "paid"]],
            INVOICE_FIELDS,
            "poll_payments",
            until,
        )
        events = []
        for row in rows:
            order_id = _order_reference(str(row.get("reference") or ""))
            if order_id is None:
                continue  # not an invoice Tandem asked for
            stamp = _rfc3339(row["write_date"])
            events.append(
                {
                    "event_id": f"tryton-invoice-{row['id']}-paid",
                    "event_type": "payment.received",
                    "schema_version": 1,
                    "occurred_at": stamp,
                    "correlation_id": order_id,
                    "data": {
                        "external_payment_id": f"invoice-{row['id']}-paid",
                        "external_invoice_id": str(row["id"]),
                        "invoice_number": str(row.get("number") or row["id"]),
                        "amount": _money(row.get("total_amount")),
                        "currency": _currency_code(row),
                        "received_at": stamp,
                        "method": "other",
                    },
                }
            )
        return PollBatch(events=events, cursor=next_cursor)


SALE_FIELDS = [
    "id",
    "number",
    "reference",
    "state",
    "party",
    "total_amount",
    "untaxed_amount",
    "tax_amount",
    "currency.code",
    "invoice_state",
]
INVOICE_FIELDS = [
    "id",
    "number",
    "reference",
    "state",
    "party",
    "total_amount",
    "untaxed_amount",
    "tax_amount",
    "currency.code",
    "invoice_date",
    "lines",
]


def cursor_format(write_date: dt.datetime, record_id: int) -> str:
    return f"{write_date.astimezone(dt.UTC).replace(tzinfo=None).isoformat()}|{record_id}"


def cursor_parse(cursor: str) -> tuple[dt.datetime | None, int]:
    """(write date, id) from a cursor; an empty cursor starts from the beginning."""
    if not cursor:
        return None, 0
    stamp, _, record_id = cursor.partition("|")
    return dt.datetime.fromisoformat(stamp), int(record_id or 0)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _money(value: Any) -> str:
    return format(Decimal(str(value if value is not None else 0)), "f")


def _currency_code(row: dict[str, Any]) -> str:
    return str((row.get("currency.") or {}).get("code") or "").upper()


def _order_reference(reference: str) -> str | None:
    """The order's enterprise id from an invoice reference (``ORD-…`` or ``ORD-…-OT``)."""
    base = reference.removesuffix("-OT")
    return base if ENTERPRISE_ID.match(base) else None


def party_record(row: dict[str, Any], reference: str) -> RemoteRecord:
    return RemoteRecord(
        id=str(row["id"]),
        status="active" if row.get("active", True) else "inactive",
        number=str(row.get("code") or ""),
        data={"external_id": reference, "name": row.get("name") or ""},
    )


def _document_record(row: dict[str, Any], **extra: str) -> RemoteRecord:
    """A sale or an invoice: both carry a reference, a party, a currency and totals."""
    return RemoteRecord(
        id=str(row["id"]),
        status=str(row["state"]),
        number=str(row.get("number") or ""),
        data={
            "external_id": row.get("reference") or "",
            "customer_id": str(row.get("party") or ""),
            "currency": _currency_code(row),
            "total": _money(row.get("total_amount")),
            "tax_total": _money(row.get("tax_amount")),
            **extra,
        },
    )


def sale_record(row: dict[str, Any]) -> RemoteRecord:
    return _document_record(row, invoice_state=row.get("invoice_state") or "")


def invoice_record(row: dict[str, Any]) -> RemoteRecord:
    return _document_record(row, untaxed_total=_money(row.get("untaxed_amount")))


def _implements(connector: TrytonErp) -> ErpApi:
    return connector  # mypy checks that TrytonErp satisfies ErpApi


def _polls(connector: TrytonErp) -> Rechecking:
    return connector  # and that it can be polled, with a look-back
