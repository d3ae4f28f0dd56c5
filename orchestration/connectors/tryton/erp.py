"""``ErpApi`` for Tryton 8.2 over its JSON-RPC HTTP interface (``requests``, no Tryton client).

Select it with ``CONNECTOR_ERP_IMPLEMENTATION=orchestration.connectors.tryton.erp.TrytonErp``;
``CONNECTOR_ERP_BASE_URL`` is the database's URL (``http://erp.example.com:8000/<database>/``),
the user comes from ``CONNECTOR_ERP_LOGIN`` and ``CONNECTOR_ERP_PASSWORD`` (or ``*_FILE``),
read when a session is opened and never stored.

Sessions and the JSON-RPC call are in ``session.py``, the value and error codec in
``codec.py``, the polling of accepted sales, posted and paid invoices, credit notes and
refunds in ``polling.py``, credit memos, payments and refunds (``ErpReceivablesApi``) in
``receivables.py``.

Records and references:
- a customer is a ``party.party`` whose code is Tandem's enterprise id, with that id (and the
  CRM id, when known) as untyped party identifiers; ``customer_find`` searches the
  identifiers; Tryton's unique party code makes a second create of it fail;
- a product is a service ``product.product`` whose code is the ERP mapping's external id
  (``ProductMapping`` for system ``erp``); it is created on first use in the account
  category ``settings.TRYTON_ACCOUNT_CATEGORY``, whose customer taxes the lines carry;
- a sales order is a ``sale.sale`` whose ``reference`` is the order's enterprise id (a
  renewal's: the contract version's ``CTR-…:v<n>``), booked in the company of the legal
  entity's ERP subsidiary (``company_for``), created and quoted (and confirmed when
  ``settings.TRYTON_CONFIRM_SALES``); its acceptance (state confirmed or processing) is read
  back by polling (``poll``), never assumed;
- a return (a cancellation's or a decrease's credit) is a sale with negative quantities
  whose origin is the original sale, in that sale's company (``return_create``);
- a customer update writes what changed to the party (``customer_update``);
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

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings

from orchestration.connectors.errors import PermanentError, RetryableError
from orchestration.connectors.interfaces import (
    CustomerUpdating,
    ErpApi,
    ErpReceivablesApi,
    Party,
    Rechecking,
    RemoteLine,
    RemoteRecord,
)
from orchestration.connectors.tryton.polling import ACCEPTED_STATES, POLL_PAGE
from orchestration.connectors.tryton.receivables import TrytonReceivables
from orchestration.connectors.tryton.records import (
    INVOICE_FIELDS,
    SALE_FIELDS,
    invoice_record,
    party_record,
    sale_record,
)
from orchestration.connectors.tryton.session import SYSTEM


class TrytonErp(TrytonReceivables):
    """``ErpApi``, ``ErpReceivablesApi`` (``TrytonReceivables``) and ``CustomerUpdating`` for
    Tryton; polled for acceptances, invoices, payments, credit notes and refunds."""

    # --- customers --------------------------------------------------------------------------
    def customer_find(self, *, reference: str) -> RemoteRecord | None:
        """The party with an identifier ``reference`` (``ErpApi.customer_find``)."""
        rows = self.search_read(
            "party.party",
            [["identifiers.code", "=", reference]],
            ["id", "code", "name", "active", "addresses"],
            operation="customer_find",
            limit=1,
        )
        return party_record(rows[0], reference) if rows else None

    def customer_create(self, *, party: Party, idempotency_key: str) -> RemoteRecord:
        """Create the party with ``reference`` as its code and identifier (and the CRM id when
        known) (``ErpApi.customer_create``).

        Tryton keeps party codes unique, so a second create of the same customer is refused.
        After a create with this key got no answer, none is sent until it settled (a waiting
        ``RetryableError``). A party not searchable right after its create is a
        ``RetryableError`` (kind ``inconsistent``).
        """
        self.settled("customer_create", idempotency_key)
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

    def customer_update(
        self, *, customer_id: str, party: Party, idempotency_key: str
    ) -> RemoteRecord:
        """Write ``party``'s name, email, tax id and address to Tryton party ``customer_id``
        (``CustomerUpdating``): the name on the party, the address on its first address, the
        email on its first email contact (added when it has none), the tax id as an untyped
        identifier (added when missing). Values already there are not written again, so a
        repeat after a lost answer changes nothing. An unknown party is a ``PermanentError``."""
        rows = self.search_read(
            "party.party",
            [["id", "=", int(customer_id)]],
            ["id", "name", "addresses"],
            operation="customer_read",
        )
        if not rows:
            raise PermanentError(
                f"Tryton has no party {customer_id}", system=SYSTEM, kind="not_found"
            )
        current = rows[0]
        values: dict[str, Any] = {}
        if party.name and current["name"] != party.name:
            values["name"] = party.name
        wanted = {
            "street": party.address_line1 or None,
            "city": party.city or None,
            "postal_code": party.postcode or None,
        }
        if current["addresses"]:
            address = self.rpc(
                "address_read",
                "model.party.address.read",
                [current["addresses"][:1], ["id", *wanted]],
            )[0]
            changed = {k: v for k, v in wanted.items() if v and address.get(k) != v}
            if changed:
                values["addresses"] = [["write", [address["id"]], changed]]
        else:
            values["addresses"] = [["create", [wanted]]]
        if party.email:
            emails = self.search_read(
                "party.contact_mechanism",
                [["party", "=", int(customer_id)], ["type", "=", "email"]],
                ["id", "value"], operation="contact_read", order=[["id", "ASC"]],
            )  # fmt: skip
            if not emails:
                values["contact_mechanisms"] = [
                    ["create", [{"type": "email", "value": party.email}]]
                ]
            elif emails[0]["value"] != party.email:
                values["contact_mechanisms"] = [
                    ["write", [emails[0]["id"]], {"value": party.email}]
                ]
        if party.tax_id:
            codes = self.search_read(
                "party.identifier", [["party", "=", int(customer_id)]], ["code"],
                operation="identifier_read",
            )  # fmt: skip
            if party.tax_id not in {row["code"] for row in codes}:
                values["identifiers"] = [["create", [{"type": None, "code": party.tax_id}]]]
        if values:
            self.rpc(
                "customer_update",
                "model.party.party.write",
                [[int(customer_id)], values],
                idempotency_key=idempotency_key,
            )
        found = self.customer_find(reference=party.reference)
        if found is None or found.id != str(customer_id):
            raise PermanentError(
                f"Tryton party {customer_id} does not carry {party.reference}",
                system=SYSTEM,
                kind="conflict",
            )
        return dataclasses.replace(found, data={**found.data, "updated": sorted(values)})

    # --- products ---------------------------------------------------------------------------
    def product_find(self, *, code: str) -> dict[str, Any] | None:
        """The product with ``code`` and its category's customer taxes, or None. Reads only."""
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
        key = self.cache_key(f"taxes:{category_id}")
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
        unit = self.one("product.uom", [["name", "=", "Unit"]], "unit of measure 'Unit'")
        category = self.one(
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

    # --- companies --------------------------------------------------------------------------
    def company_for(self, subsidiary: str) -> int | None:
        """The Tryton company of a legal entity's ``erp_subsidiary``: the company's id, or
        the code of the company's party; None for ``""`` (the connector user's current
        company). One the user may not book in, or none, is a ``PermanentError``."""
        if not subsidiary:
            return None
        key = f"company:{subsidiary}"
        if key not in self._cache:
            domain = (
                [["id", "=", int(subsidiary)]]
                if subsidiary.isdigit()
                else [["party.code", "=", subsidiary]]
            )
            rows = self.search_read(
                "company.company", domain, ["id"], operation="company_lookup", limit=1
            )
            allowed = self.session().context.get("companies") or []
            if not rows or (allowed and int(rows[0]["id"]) not in allowed):
                raise PermanentError(
                    f"Tryton has no company {subsidiary!r} the connector user books in "
                    "(the legal entity's ERP subsidiary)",
                    system=SYSTEM,
                    kind="not_found",
                )
            self._cache[key] = int(rows[0]["id"])
        return int(self._cache[key])

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
            with self.in_company(rows[0].get("company")):
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
        subsidiary: str = "",
    ) -> RemoteRecord:
        """Create the sale with ``reference`` for party ``customer_id`` in the company of
        ``subsidiary`` (``company_for``) and quote it (confirm it too when
        ``TRYTON_CONFIRM_SALES``) (``ErpApi.sales_order_create``).

        Products are created on first use. After a create with this key got no answer, none is
        sent until it settled (a waiting ``RetryableError``). A party with no address, or an
        unknown company, is refused (``PermanentError``).
        """
        self.settled("sales_order_create", idempotency_key)
        with self.in_company(self.company_for(subsidiary)):
            return self._sale_create(
                reference=reference, customer_id=customer_id, currency=currency, lines=lines,
                order_date=order_date, idempotency_key=idempotency_key,
                operation="sales_order_create",
            )  # fmt: skip

    def _sale_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
        operation: str,
        origin: str = "",
    ) -> RemoteRecord:
        party = self.rpc(
            "customer_read", "model.party.party.read", [[int(customer_id)], ["addresses"]]
        )
        if not party or not party[0]["addresses"]:
            raise PermanentError(
                f"Tryton party {customer_id} has no address", system=SYSTEM, kind="validation"
            )
        address = party[0]["addresses"][0]
        sale_lines = [self._sale_line(line) for line in lines]
        values = {
            "reference": reference,
            "party": int(customer_id),
            "invoice_address": address,
            "shipment_address": address,
            "sale_date": order_date,
            "currency": self.one(
                "currency.currency",
                [["code", "=", currency.upper()]],
                f"currency {currency.upper()}",
            ),
            "payment_term": self.one("account.invoice.payment_term", [], "payment term"),
            "invoice_method": "manual",
            "lines": [["create", sale_lines]],
        }
        if self._company is not None:
            values["company"] = self._company
        if origin:
            values["origin"] = origin
        created = self.rpc(
            operation, "model.sale.sale.create", [[values]], idempotency_key=idempotency_key
        )
        return self._sale_submit(int(created[0]))

    def return_find(self, *, reference: str) -> RemoteRecord | None:
        """A return is a Tryton sale with negative quantities, found by its reference."""
        return self.sales_order_find(reference=reference)

    def return_create(
        self,
        *,
        reference: str,
        customer_id: str,
        currency: str,
        lines: list[RemoteLine],
        order_date: dt.date,
        idempotency_key: str,
    ) -> RemoteRecord:
        """A return as Tryton's own Return wizard records one: a sale whose lines have
        negative quantities (``ErpApi.return_create`` takes them positive), whose origin is
        the original sale, in the original sale's company (``original_sale``). Without an
        original sale (none of the party's accepted sales has these products) it is booked
        in the user's current company with no origin."""
        self.settled("return_create", idempotency_key)
        original = self.original_sale(
            customer_id=customer_id, currency=currency,
            products={line.product_ref for line in lines},
        )  # fmt: skip
        with self.in_company(original["company"] if original else None):
            return self._sale_create(
                reference=reference, customer_id=customer_id, currency=currency,
                lines=[dataclasses.replace(line, quantity=-line.quantity) for line in lines],
                order_date=order_date, idempotency_key=idempotency_key,
                operation="return_create",
                origin=f"sale.sale,{original['id']}" if original else "",
            )  # fmt: skip

    def original_sale(
        self, *, customer_id: str, currency: str, products: set[str]
    ) -> dict[str, Any] | None:
        """The party's latest accepted sale (not a return) in ``currency`` that sold every
        product of ``products``, with its ``id`` and ``company``; None when there is none."""
        sales = self.search_read(
            "sale.sale",
            [["party", "=", int(customer_id)], ["state", "in", list(ACCEPTED_STATES)],
             ["currency.code", "=", currency.upper()], ["origin", "=", None]],
            ["id", "company", "lines"],
            operation="original_sale_find", limit=20, order=[["id", "DESC"]],
        )  # fmt: skip
        if not sales:
            return None
        sold: dict[int, set[str]] = {}
        for row in self.rpc(
            "sale_lines_read",
            "model.sale.line.read",
            [[i for sale in sales for i in sale["lines"]], ["sale", "quantity", "product.code"]],
        ):
            if row.get("quantity") and float(row["quantity"]) > 0:
                code = str((row.get("product.") or {}).get("code") or "")
                sold.setdefault(int(row["sale"]), set()).add(code)
        for sale in sales:
            if products <= sold.get(int(sale["id"]), set()):
                return {"id": int(sale["id"]), "company": int(sale["company"])}
        return None

    def _sale_line(self, line: RemoteLine) -> dict[str, Any]:
        """A sale line's values, its product ensured and taxed as its category says."""
        product = self.product_ensure(
            code=line.product_ref, name=line.description, list_price=line.unit_price
        )
        return {
            "type": "line",
            "product": product["id"],
            "quantity": float(line.quantity),
            "unit": self.one("product.uom", [["name", "=", "Unit"]], "unit 'Unit'"),
            "unit_price": line.unit_price,
            "description": line.description or line.product_ref,
            "taxes": [["add", list(product.get("customer_taxes_used") or [])]],
        }

    def sales_orders_count(self, *, references: list[str]) -> dict[str, int]:
        """How many sales (returns included) Tryton holds for each reference (a rehearsal's
        books check)."""
        return self._count_by_reference("sale.sale", [], references, "sales_order_count")

    def invoices_count(self, *, references: list[str]) -> dict[str, int]:
        """How many customer invoices and credit notes Tryton holds for each reference."""
        return self._count_by_reference(
            "account.invoice", [["type", "=", "out"]], references, "invoice_count"
        )

    def _count_by_reference(
        self, model: str, domain: list[Any], references: list[str], operation: str
    ) -> dict[str, int]:
        counts = dict.fromkeys(references, 0)
        for start in range(0, len(references), POLL_PAGE):
            chunk = references[start : start + POLL_PAGE]
            for row in self.search_read(
                model, [["reference", "in", chunk], *domain], ["reference"], operation=operation
            ):
                counts[str(row["reference"])] += 1
        return counts

    def sales_order_confirm(self, *, sales_order_id: str) -> RemoteRecord:
        """Confirm and process a quoted sale (what finance does in Tryton to accept it), in
        the sale's company."""
        sale = self._sale(int(sales_order_id))
        with self.in_company(int(str(sale.data["company_id"])) or None):
            self.button(
                "sale.sale", "confirm", [int(sales_order_id)], operation="sales_order_confirm"
            )
            self.button(
                "sale.sale", "process", [int(sales_order_id)], operation="sales_order_process"
            )
        return self._sale(int(sales_order_id))

    def sales_order_cancel(self, *, sales_order_id: str, idempotency_key: str) -> RemoteRecord:
        """Back to draft if needed, then cancel (``ErpApi.sales_order_cancel``); a cancelled sale
        is returned unchanged. A sale Tryton keeps (it is being invoiced) is refused with
        ``PermanentError``: its invoices are cancelled or credited in Tryton first.
        """
        sale = self._sale(int(sales_order_id))
        with self.in_company(int(str(sale.data["company_id"])) or None):
            if sale.status in ("quotation", "confirmed"):
                self.button(
                    "sale.sale", "draft", [int(sales_order_id)], operation="sales_order_draft"
                )
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
            with self.in_company(int(str(found.data["company_id"])) or None):
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
            self.settled("invoice_create", idempotency_key)
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
        """Create the customer invoice in draft (``invoice_create`` posts it), in the sale's
        company (the user's current one without a sale)."""
        party_id, sale_lines, company = self._invoiced_sale(customer_id, sales_order_id)
        with self.in_company(company):
            return self._invoice_draft_in_company(
                reference=reference, party_id=party_id, sale_lines=sale_lines, currency=currency,
                lines=lines, idempotency_key=idempotency_key, taxed=bool(sales_order_id),
            )  # fmt: skip

    def _invoice_draft_in_company(
        self,
        *,
        reference: str,
        party_id: int,
        sale_lines: dict[str, dict[str, Any]],
        currency: str,
        lines: list[RemoteLine],
        idempotency_key: str,
        taxed: bool,
    ) -> RemoteRecord:
        party = self.rpc(
            "customer_read",
            "model.party.party.read",
            [[party_id], ["addresses", "account_receivable"]],
        )[0]
        invoice_lines = [
            self._invoice_line(line, origin=sale_lines.get(line.product_ref), taxed=taxed)
            for line in lines
        ]
        values = self._invoice_values(
            reference=reference, party_id=party_id, party=party, currency=currency,
            lines=invoice_lines,
        )  # fmt: skip
        created = self.rpc(
            "invoice_create",
            "model.account.invoice.create",
            [[values]],
            idempotency_key=idempotency_key,
        )
        rows = self.rpc(
            "invoice_read", "model.account.invoice.read", [[int(created[0])], INVOICE_FIELDS]
        )
        return invoice_record(rows[0])

    def _invoiced_sale(
        self, customer_id: str, sales_order_id: str
    ) -> tuple[int, dict[str, dict[str, Any]], int | None]:
        """The party to invoice, the sale's lines by product code (none without a sale) and
        the sale's company (without a sale, the party's latest sale's: ``_party_company``).

        With a sale, its party is invoiced (whatever ``customer_id`` says) and the first
        line of each product is the one an invoice line of that product invoices.
        """
        if not sales_order_id:
            return int(customer_id), {}, self._party_company(customer_id)
        sale = self.rpc(
            "sales_order_read",
            "model.sale.sale.read",
            [[int(sales_order_id)], ["party", "lines", "invoice_address", "company"]],
        )[0]
        sale_lines: dict[str, dict[str, Any]] = {}
        for row in self.rpc(
            "sale_lines_read",
            "model.sale.line.read",
            [sale["lines"], ["id", "product.code", "taxes", "unit"]],
        ):
            sale_lines.setdefault(str((row.get("product.") or {}).get("code") or ""), row)
        return int(sale["party"]), sale_lines, int(sale["company"])

    def _party_company(self, customer_id: str) -> int | None:
        """The company of the party's latest accepted sale: where billing's invoices of that
        customer are posted (parties are shared by Tryton's companies); None (the user's
        current company) for a party with no sale."""
        rows = self.search_read(
            "sale.sale",
            [["party", "=", int(customer_id)], ["state", "in", list(ACCEPTED_STATES)]],
            ["company"], operation="party_company_find", limit=1, order=[["id", "DESC"]],
        )  # fmt: skip
        return int(rows[0]["company"]) if rows else None

    def _invoice_line(
        self, line: RemoteLine, *, origin: dict[str, Any] | None, taxed: bool = True
    ) -> dict[str, Any]:
        """An invoice line's values; with ``origin`` (a sale line) Tryton counts it as invoiced.
        Untaxed lines (``taxed`` False) are billing's invoices, whose tax is a line of its own."""
        product = self.product_ensure(
            code=line.product_ref, name=line.description, list_price=line.unit_price
        )
        values: dict[str, Any] = {
            "type": "line",
            "product": product["id"],
            "quantity": float(line.quantity),
            "unit": self.one("product.uom", [["name", "=", "Unit"]], "unit 'Unit'"),
            "unit_price": line.unit_price,
            "description": line.description or line.product_ref,
            "account": self._revenue_account(),
            "taxes": [["add", list(product.get("customer_taxes_used") or []) if taxed else []]],
        }
        if origin is not None:
            values["origin"] = f"sale.line,{origin['id']}"
        return values

    def _invoice_values(
        self,
        *,
        reference: str,
        party_id: int,
        party: dict[str, Any],
        currency: str,
        lines: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """A customer invoice's values: dated today, in the revenue journal, on the party's
        first address and receivable account (the configured default when it has none)."""
        return {
            "type": "out",
            "reference": reference,
            "party": party_id,
            "invoice_address": party["addresses"][0],
            "account": party["account_receivable"] or self._default_receivable(),
            "journal": self.one("account.journal", [["type", "=", "revenue"]], "revenue journal"),
            "currency": self.one(
                "currency.currency",
                [["code", "=", currency.upper()]],
                f"currency {currency.upper()}",
            ),
            "payment_term": self.one("account.invoice.payment_term", [], "payment term"),
            "invoice_date": dt.date.today(),
            "lines": [["create", lines]],
        }

    def _default_receivable(self) -> int:
        key = self.cache_key("default_receivable")
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
        key = self.cache_key("revenue_account")
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


def _implements(connector: TrytonErp) -> ErpApi:
    return connector  # mypy checks that TrytonErp satisfies ErpApi


def _keeps_receivables(connector: TrytonErp) -> ErpReceivablesApi:
    return connector  # and ErpReceivablesApi


def _updates_customers(connector: TrytonErp) -> CustomerUpdating:
    return connector  # and CustomerUpdating


def _polls(connector: TrytonErp) -> Rechecking:
    return connector  # and that it can be polled, with a look-back
