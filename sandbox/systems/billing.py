"""A Stripe-Billing-like subscription billing system, speaking JSON instead of forms.

Customers (``cus_``), products (``prod_``), prices (``price_``), subscriptions (``sub_``)
with items (``si_``), and invoices (``in_``: draft -> open -> paid, or void). Amounts are
integer minor units like Stripe. Creating a subscription activates it and issues its first
invoice at once (``subscription.activated`` then ``invoice.posted``); a ``send_invoice``
invoice stays open, a ``charge_automatically`` one is paid. Lists filter by
``metadata[key]=value`` so a client can find an effect whose response it never received.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sandbox.errors import ApiError
from sandbox.systems.base import Call, Fields, Reply, Route, add_months, iso_utc
from sandbox.systems.base import route as r
from sandbox.systems.stripe import (
    StripeSystem,
    list_object,
    metadata_matches,
    minor_to_decimal,
    unix_date,
)

ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")
INTERVALS = ("day", "week", "month", "year")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
PRICE_FIELDS = (
    "currency",
    "unit_amount",
    "product",
    "product_data",
    "recurring",
    "lookup_key",
    "nickname",
    "metadata",
    "active",
    "tax_behavior",
)
CANCEL_FIELDS = ("prorate", "invoice_now")
SUBSCRIPTION_FIELDS = (
    "customer",
    "items",
    "metadata",
    "collection_method",
    "days_until_due",
    "billing_cycle_anchor",
    "description",
    "cancel_at_period_end",
    "proration_behavior",
    "payment_behavior",
)
INVOICE_FIELDS = (
    "customer",
    "subscription",
    "currency",
    "collection_method",
    "days_until_due",
    "description",
    "metadata",
    "lines",
    "auto_advance",
)


def period_end(start: int, interval: str, count: int) -> int:
    moment = dt.datetime.fromtimestamp(start, dt.UTC)
    if interval == "day":
        moment += dt.timedelta(days=count)
    elif interval == "week":
        moment += dt.timedelta(weeks=count)
    else:
        months = count * (12 if interval == "year" else 1)
        moment = dt.datetime.combine(add_months(moment.date(), months), moment.timetz())
    return int(moment.timestamp())


class BillingSystem(StripeSystem):
    name = "billing"
    collections = (
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "charges",
        "refunds",
        "credit_notes",
        "usage_records",
    )

    def routes(self) -> list[Route]:
        return [
            r("GET", "/customers", self.customer_list),
            r("POST", "/customers", self.customer_create),
            r("GET", "/customers/{id}", self.customer_get),
            r("POST", "/customers/{id}", self.customer_update),
            r("GET", "/products", self.product_list),
            r("POST", "/products", self.product_create),
            r("GET", "/products/{id}", self.product_get),
            r("GET", "/prices", self.price_list),
            r("POST", "/prices", self.price_create),
            r("GET", "/prices/{id}", self.price_get),
            r("GET", "/subscriptions", self.subscription_list),
            r("POST", "/subscriptions", self.subscription_create),
            r("GET", "/subscriptions/{id}", self.subscription_get),
            r("POST", "/subscriptions/{id}", self.subscription_update),
            r("DELETE", "/subscriptions/{id}", self.subscription_cancel),
            r("GET", "/invoices", self.invoice_list),
            r("POST", "/invoices", self.invoice_create),
            r("GET", "/invoices/{id}", self.invoice_get),
            r("POST", "/invoices/{id}/finalize", self.invoice_finalize),
            r("POST", "/invoices/{id}/pay", self.invoice_pay),
            r("POST", "/invoices/{id}/void", self.invoice_void),
            r("GET", "/charges", self.charge_list),
            r("GET", "/refunds", self.refund_list),
            r("POST", "/refunds", self.refund_create),
            r("GET", "/credit_notes", self.credit_note_list),
            r("POST", "/credit_notes", self.credit_note_create),
            r("GET", "/usage_records", self.usage_record_list),
            r("POST", "/usage_records", self.usage_record_create),
        ]

    # --- customers ----------------------------------------------------------------------
    def _address(self, fields: Fields) -> dict[str, Any] | None:
        raw = fields.mapping("address")
        if raw is None:
            return None
        address = fields.nested(raw, "address.", ADDRESS_FIELDS)
        return {name: address.string(name) for name in ADDRESS_FIELDS}

    def customer_create(self, call: Call) -> Reply:
        fields = self.check(
            call.body,
            ("name", "email", "phone", "description", "address", "metadata", "tax_exempt"),
        )
        customer_id = call.stripe_id("cus")
        customer = {
            "id": customer_id,
            "object": "customer",
            "address": self._address(fields),
            "balance": 0,
            "created": call.unix_now,
            "currency": None,
            "description": fields.string("description"),
            "email": fields.string("email", max_length=512),
            "invoice_prefix": hashlib.sha256(customer_id.encode()).hexdigest()[:8].upper(),
            "livemode": False,
            "metadata": self.metadata(fields),
            "name": fields.string("name"),
            "phone": fields.string("phone"),
            "tax_exempt": fields.choice("tax_exempt", ("none", "exempt", "reverse")) or "none",
        }
        call.collection("customers")[customer_id] = customer
        return Reply(200, customer)

    def customer_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("customers"), "customer", call.params["id"]))

    def customer_update(self, call: Call) -> Reply:
        customer = self.lookup(call.collection("customers"), "customer", call.params["id"])
        fields = self.check(
            call.body,
            ("name", "email", "phone", "description", "address", "metadata", "tax_exempt"),
        )
        changes: dict[str, Any] = {"metadata": self.metadata(fields, customer["metadata"])}
        for name in ("name", "email", "phone", "description"):
            if name in call.body:
                changes[name] = fields.string(name, max_length=512)
        if "address" in call.body:
            changes["address"] = self._address(fields)
        if "tax_exempt" in call.body:
            changes["tax_exempt"] = fields.choice("tax_exempt", ("none", "exempt", "reverse"))
        customer.update(changes)
        return Reply(200, customer)

    def customer_list(self, call: Call) -> Reply:
        email = call.arg("email")
        wanted = call.metadata_filter()
        found = [
            customer
            for customer in call.collection("customers").values()
            if (email is None or customer["email"] == email) and metadata_matches(customer, wanted)
        ]
        return Reply(200, list_object("/billing/customers", found, self._limit(call)))

    def _limit(self, call: Call) -> int | None:
        value = call.arg("limit")
        if value is None:
            return None
        if not value.isdigit() or not 1 <= int(value) <= 100:
            raise self.invalid("limit", "limit must be an integer between 1 and 100")
        return int(value)

    def _changes(self, call: Call, collection: str) -> Reply:
        """``?updated_since=<unix>[&starting_after=<id>][&limit=n]``: the records changed at
        or after ``updated_since``, oldest first (creation order), a page after the cursor
        ``starting_after``; ``has_more`` says whether another page follows. The listing a
        reconciliation streams; ``updated_since=0`` reads everything."""
        since = call.arg("updated_since") or ""
        if not since.isdigit():
            raise self.invalid("updated_since", "updated_since must be a unix timestamp")
        limit = self._limit(call) or 100
        after = call.arg("starting_after")
        records = call.collection(collection)
        if after is not None and after not in records:
            raise self.not_found(collection.rstrip("s"), after)
        page: list[dict[str, Any]] = []
        started = after is None
        has_more = False
        for key, record in records.items():
            if not started:
                started = key == after
                continue
            if record.get("updated", record["created"]) < int(since):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(record)
        url = f"/billing/{collection}"
        return Reply(200, {"object": "list", "url": url, "has_more": has_more, "data": page})

    # --- products and prices ------------------------------------------------------------
    def product_create(self, call: Call) -> Reply:
        fields = self.check(call.body, ("id", "name", "description", "active", "metadata"))
        products = call.collection("products")
        product_id = fields.string("id", max_length=100)
        if product_id is not None and product_id in products:
            raise ApiError(400, "resource_already_exists", "Product already exists.", field="id")
        product: dict[str, Any] = {
            "id": product_id or call.stripe_id("prod"),
            "object": "product",
            "active": fields.boolean("active", default=True),
            "created": call.unix_now,
            "description": fields.string("description"),
            "livemode": False,
            "metadata": self.metadata(fields),
            "name": fields.string("name", required=True),
        }
        products[product["id"]] = product
        return Reply(200, product)

    def product_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("products"), "product", call.params["id"]))

    def product_list(self, call: Call) -> Reply:
        wanted = call.metadata_filter()
        found = [p for p in call.collection("products").values() if metadata_matches(p, wanted)]
        return Reply(200, list_object("/billing/products", found, self._limit(call)))

    def price_create(self, call: Call) -> Reply:
        """A price of an existing product, or of a new one (``product_data``); a lookup key
        already in use is refused, as Stripe does."""
        fields = self.check(call.body, PRICE_FIELDS)
        currency = fields.currency("currency", required=True)
        unit_amount = fields.integer("unit_amount", required=True, minimum=0)
        lookup_key = fields.string("lookup_key", max_length=200)
        prices = call.collection("prices")
        if lookup_key and any(p["lookup_key"] == lookup_key for p in prices.values()):
            raise ApiError(
                400,
                "lookup_key_in_use",
                f"A price (`lookup_key`: {lookup_key}) already uses that lookup key.",
                field="lookup_key",
            )
        recurring = self._price_recurring(fields)
        product_id = self._price_product(call, fields)
        assert currency is not None and unit_amount is not None
        price: dict[str, Any] = {
            "id": call.stripe_id("price"),
            "object": "price",
            "active": fields.boolean("active", default=True),
            "billing_scheme": "per_unit",
            "created": call.unix_now,
            "currency": currency.lower(),
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": self.metadata(fields),
            "nickname": fields.string("nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": fields.choice("tax_behavior", ("inclusive", "exclusive", "unspecified"))
            or "unspecified",
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        prices[price["id"]] = price
        return Reply(200, price)

    def _price_recurring(self, fields: Fields) -> dict[str, Any] | None:
        """The price's ``recurring`` (interval, count, usage type), None for a one-time price."""
        raw_recurring = fields.mapping("recurring")
        if raw_recurring is None:
            return None
        nested = fields.nested(
            raw_recurring, "recurring.", ("interval", "interval_count", "usage_type")
        )
        return {
            "interval": nested.choice("interval", INTERVALS, required=True),
            "interval_count": nested.integer("interval_count", minimum=1) or 1,
            "usage_type": nested.choice("usage_type", ("licensed", "metered")) or "licensed",
        }

    def _price_product(self, call: Call, fields: Fields) -> str:
        """The id of the price's product: ``product`` (which must exist), or a product created
        from ``product_data``; one of them is required."""
        products = call.collection("products")
        product_id = fields.string("product")
        product_data = fields.mapping("product_data")
        if product_id is not None:
            self.lookup(products, "product", product_id, field="product")
            return product_id
        if product_data is None:
            raise self.missing("product")
        data = fields.nested(product_data, "product_data.", ("name", "metadata"))
        name = data.string("name", required=True)
        metadata = self.metadata(data)
        product_id = call.stripe_id("prod")
        products[product_id] = {
            "id": product_id,
            "object": "product",
            "active": True,
            "created": call.unix_now,
            "description": None,
            "livemode": False,
            "metadata": metadata,
            "name": name,
        }
        return product_id

    def price_get(self, call: Call) -> Reply:
        return Reply(200, self.lookup(call.collection("prices"), "price", call.params["id"]))

    def price_list(self, call: Call) -> Reply:
        keys = set(call.query.get("lookup_keys[]", []) + call.query.get("lookup_key", []))
        product = call.arg("product")
        found = [
            price
            for price in call.collection("prices").values()
            if (not keys or price["lookup_key"] in keys)
            and (product is None or price["product"] == product)
            and metadata_matches(price, call.metadata_filter())
        ]
        return Reply(200, list_object("/billing/prices", found, self._limit(call)))

    # --- subscriptions ------------------------------------------------------------------
    def _subscription_item(self, call: Call, price: dict[str, Any], quantity: int, sub_id: str):
        return {
            "id": call.stripe_id("si"),
            "object": "subscription_item",
            "created": call.unix_now,
            "metadata": {},
            "price": price,
            "quantity": quantity,
            "subscription": sub_id,
        }

    def _check_prices(self, prices: list[dict[str, Any]]) -> None:
        for price in prices:
            if price["recurring"] is None:
                raise self.invalid(
                    "items",
                    f"The price `{price['id']}` is a one-time price; subscriptions need "
                    "recurring prices.",
                )
        intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
        if len(intervals) > 1:
            raise self.invalid(
                "items",
                "All prices on a subscription must have the same `recurring.interval` and "
                "`recurring.interval_count`.",
            )
        if len({p["currency"] for p in prices}) > 1:
            raise self.invalid("items", "All prices on a subscription must share a currency.")

    def subscription_create(self, call: Call) -> Reply:
        """An active subscription, announced (``subscription.activated``), with its first
        invoice issued at once (``invoice.posted``; paid when charged automatically)."""
        fields = self.check(call.body, SUBSCRIPTION_FIELDS)
        customer = self.lookup(
            call.collection("customers"),
            "customer",
            fields.string("customer", required=True),
            field="customer",
        )
        wanted = self._subscription_items_wanted(call, fields)
        self._check_prices([price for price, _ in wanted])
        collection_method, days_until_due = _collection_terms(fields)
        start = fields.integer("billing_cycle_anchor", minimum=0) or call.unix_now
        recurring = wanted[0][0]["recurring"]
        sub_id = call.stripe_id("sub", width=24)
        subscription: dict[str, Any] = {
            "id": sub_id,
            "object": "subscription",
            "billing_cycle_anchor": start,
            "cancel_at_period_end": fields.boolean("cancel_at_period_end"),
            "canceled_at": None,
            "collection_method": collection_method,
            "created": call.unix_now,
            "currency": wanted[0][0]["currency"],
            "current_period_start": start,
            "current_period_end": period_end(
                start, recurring["interval"], recurring["interval_count"]
            ),
            "customer": customer["id"],
            "days_until_due": days_until_due,
            "description": fields.string("description", max_length=500),
            "ended_at": None,
            "items": {
                "object": "list",
                "data": [
                    self._subscription_item(call, price, quantity, sub_id)
                    for price, quantity in wanted
                ],
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": self.metadata(fields),
            "start_date": start,
            "status": "active",
            "updated": call.unix_now,
        }
        call.collection("subscriptions")[sub_id] = subscription
        call.emit(
            "subscription.activated",
            subscription_activated_data(subscription, call.now),
            correlation_id=_correlation(subscription["metadata"]),
        )
        invoice = self._subscription_first_invoice(call, subscription, customer)
        subscription["latest_invoice"] = invoice["id"]
        return Reply(200, subscription)

    def _subscription_items_wanted(
        self, call: Call, fields: Fields
    ) -> list[tuple[dict[str, Any], int]]:
        """Each item's price (which must exist) and quantity (1 unless given)."""
        prices = call.collection("prices")
        wanted: list[tuple[dict[str, Any], int]] = []
        for index, raw in enumerate(fields.items("items", required=True, maximum=20)):
            item = fields.nested(raw, f"items[{index}].", ("price", "quantity"))
            price_id = item.string("price", required=True)
            price = self.lookup(prices, "price", price_id, field=f"items[{index}][price]")
            quantity = item.integer("quantity", minimum=1)
            wanted.append((price, 1 if quantity is None else quantity))
        return wanted

    def _subscription_first_invoice(
        self, call: Call, subscription: dict[str, Any], customer: dict[str, Any]
    ) -> dict[str, Any]:
        """Invoice the subscription's first period, one line per item, and post it."""
        invoice = self._invoice_new(
            call,
            customer=customer,
            currency=subscription["currency"],
            collection_method=subscription["collection_method"],
            days_until_due=subscription["days_until_due"],
            metadata={},
            description=None,
            subscription=subscription,
        )
        for item in subscription["items"]["data"]:
            invoice["lines"]["data"].append(
                self._invoice_line(
                    call,
                    invoice,
                    price=item["price"],
                    quantity=item["quantity"],
                    amount=item["price"]["unit_amount"] * item["quantity"],
                    description=None,
                    subscription_item=item,
                )
            )
        self._invoice_totals(invoice)
        self._invoice_post(call, invoice, customer)
        return invoice

    def subscription_get(self, call: Call) -> Reply:
        return Reply(
            200, self.lookup(call.collection("subscriptions"), "subscription", call.params["id"])
        )

    def subscription_list(self, call: Call) -> Reply:
        if call.arg("updated_since") is not None:
            return self._changes(call, "subscriptions")
        customer = call.arg("customer")
        status = call.arg("status")
        wanted = call.metadata_filter()
        found = [
            sub
            for sub in call.collection("subscriptions").values()
            if (customer is None or sub["customer"] == customer)
            and (status is None or sub["status"] == status)
            and metadata_matches(sub, wanted)
        ]
        return Reply(200, list_object("/billing/subscriptions", found, self._limit(call)))

    def subscription_update(self, call: Call) -> Reply:
        subscription = self.lookup(
            call.collection("subscriptions"), "subscription", call.params["id"]
        )
        fields = self.check(
            call.body,
            ("items", "metadata", "cancel_at_period_end", "description", "proration_behavior"),
        )
        metadata = self.metadata(fields, subscription["metadata"])
        if subscription["status"] == "canceled" and set(call.body) - {"metadata"}:
            raise ApiError(
                400,
                "resource_invalid_state",
                "A canceled subscription can only update its metadata.",
            )
        prices = call.collection("prices")
        items = {item["id"]: dict(item) for item in subscription["items"]["data"]}
        added: list[tuple[dict[str, Any], int]] = []
        for index, raw in enumerate(fields.items("items", maximum=20)):
            item = fields.nested(raw, f"items[{index}].", ("id", "price", "quantity", "deleted"))
            item_id = item.string("id")
            quantity = item.integer("quantity", minimum=1)
            if item_id is not None:
                if item_id not in items:
                    raise self.not_found("subscription item", item_id)
                if item.boolean("deleted"):
                    del items[item_id]
                    continue
                if item.string("price") is not None:
                    items[item_id]["price"] = self.lookup(
                        prices, "price", item.string("price"), field=f"items[{index}][price]"
                    )
                if quantity is not None:
                    items[item_id]["quantity"] = quantity
            else:
                price_id = item.string("price", required=True)
                price = self.lookup(prices, "price", price_id, field=f"items[{index}][price]")
                added.append((price, 1 if quantity is None else quantity))
        all_prices = [item["price"] for item in items.values()] + [price for price, _ in added]
        if not all_prices:
            raise self.invalid("items", "A subscription must keep at least one item.")
        self._check_prices(all_prices)
        new_items = list(items.values()) + [
            self._subscription_item(call, price, quantity, subscription["id"])
            for price, quantity in added
        ]
        subscription["items"]["data"] = new_items
        subscription["metadata"] = metadata
        subscription["updated"] = call.unix_now
        if "cancel_at_period_end" in call.body:
            subscription["cancel_at_period_end"] = fields.boolean("cancel_at_period_end")
        if "description" in call.body:
            subscription["description"] = fields.string("description", max_length=500)
        return Reply(200, subscription)

    def subscription_cancel(self, call: Call) -> Reply:
        """Cancel now. ``prorate`` credits the unused time of the current period (kept as
        ``cancellation_details.proration_credit``, in minor units) and ``invoice_now`` says
        it goes on a final invoice; a cancelled subscription is answered unchanged."""
        subscription = self.lookup(
            call.collection("subscriptions"), "subscription", call.params["id"]
        )
        flags = {name: call.arg(name) for name in CANCEL_FIELDS}  # a DELETE's query string
        for name, value in flags.items():
            if value not in (None, "true", "false"):
                raise self.invalid(name, f"{name} must be true or false")
        if subscription["status"] != "canceled":
            prorate = flags["prorate"] == "true"
            credit = 0
            period = subscription["current_period_end"] - subscription["current_period_start"]
            if prorate and period > 0:
                left = max(subscription["current_period_end"] - call.unix_now, 0)
                charged = sum(
                    item["price"]["unit_amount"] * item["quantity"]
                    for item in subscription["items"]["data"]
                )
                credit = charged * left // period
            subscription["status"] = "canceled"
            subscription["canceled_at"] = call.unix_now
            subscription["ended_at"] = call.unix_now
            subscription["updated"] = call.unix_now
            subscription["cancellation_details"] = {
                "prorate": prorate,
                "invoice_now": flags["invoice_now"] == "true",
                "proration_credit": credit,
            }
        return Reply(200, subscription)

    # --- metered usage ------------------------------------------------------------------
    def usage_record_create(self, call: Call) -> Reply:
        """Usage of a metered price on a subscription for one period, keyed by ``identifier``.

        A signed ``quantity`` (a decimal string): a negative one corrects an earlier report.
        The same ``identifier`` again answers the record already stored and adds nothing, so
        a client whose answer was lost can send it again.
        """
        fields = self.check(
            call.body,
            ("identifier", "subscription", "price", "quantity", "period", "metadata"),
        )
        identifier = fields.string("identifier", required=True, max_length=100)
        records = call.collection("usage_records")
        for record in records.values():
            if record["identifier"] == identifier:
                return Reply(200, record)
        subscription = self.lookup(
            call.collection("subscriptions"),
            "subscription",
            fields.string("subscription", required=True),
            field="subscription",
        )
        price = self.lookup(
            call.collection("prices"), "price", fields.string("price", required=True),
            field="price",
        )  # fmt: skip
        if (price["recurring"] or {}).get("usage_type") != "metered":
            raise self.invalid("price", f"The price `{price['id']}` is not a metered price.")
        if price["currency"] != subscription["currency"]:
            raise self.invalid("price", "The price's currency is not the subscription's.")
        quantity = fields.decimal("quantity", required=True)
        raw_period = fields.mapping("period", required=True)
        period = fields.nested(raw_period, "period.", ("start", "end"))
        start, end = period.date("start", required=True), period.date("end", required=True)
        assert quantity is not None and start is not None and end is not None
        if end < start:
            raise self.invalid("period", "The period ends before it starts.")
        record = {
            "id": call.stripe_id("mbur"),
            "object": "usage_record",
            "identifier": identifier,
            "subscription": subscription["id"],
            "price": price["id"],
            "quantity": str(quantity),
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "metadata": self.metadata(fields),
            "created": call.unix_now,
            "livemode": False,
        }
        records[record["id"]] = record
        return Reply(200, record)

    def usage_record_list(self, call: Call) -> Reply:
        identifier = call.arg("identifier")
        subscription = call.arg("subscription")
        found = [
            record
            for record in call.collection("usage_records").values()
            if (identifier is None or record["identifier"] == identifier)
            and (subscription is None or record["subscription"] == subscription)
        ]
        return Reply(200, list_object("/billing/usage_records", found, self._limit(call)))

    # --- invoices -----------------------------------------------------------------------
    def _invoice_new(
        self,
        call: Call,
        *,
        customer: dict[str, Any],
        currency: str,
        collection_method: str,
        days_until_due: int | None,
        metadata: dict[str, str],
        description: str | None,
        subscription: dict[str, Any] | None,
    ) -> dict[str, Any]:
        invoice_id = call.stripe_id("in", width=24)
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "charge": None,
            "collection_method": collection_method,
            "created": call.unix_now,
            "currency": currency,
            "customer": customer["id"],
            "customer_email": customer["email"],
            "customer_name": customer["name"],
            "days_until_due": days_until_due,
            "description": description,
            "due_date": None,
            "lines": {"object": "list", "data": []},
            "livemode": False,
            "metadata": metadata,
            "number": None,
            "paid": False,
            "period_start": subscription["current_period_start"] if subscription else None,
            "period_end": subscription["current_period_end"] if subscription else None,
            "status": "draft",
            "status_transitions": {"finalized_at": None, "paid_at": None, "voided_at": None},
            "subscription": subscription["id"] if subscription else None,
            "subscription_details": {"metadata": dict(subscription["metadata"])}
            if subscription
            else None,
            "subtotal": 0,
            "tax": 0,
            "total": 0,
            "updated": call.unix_now,
        }
        call.collection("invoices")[invoice_id] = invoice
        return invoice

    def _invoice_line(
        self,
        call: Call,
        invoice: dict[str, Any],
        *,
        price: dict[str, Any] | None,
        quantity: int,
        amount: int,
        description: str | None,
        subscription_item: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if description is None and price is not None:
            product = call.collection("products").get(price["product"], {})
            description = f"{quantity} x {product.get('name', price['product'])}"
        return {
            "id": call.stripe_id("il", width=24),
            "object": "line_item",
            "amount": amount,
            "currency": invoice["currency"],
            "description": description or "",
            "metadata": {},
            "period": {
                "start": invoice["period_start"] or call.unix_now,
                "end": invoice["period_end"] or call.unix_now,
            },
            "price": price,
            "quantity": quantity,
            "subscription": invoice["subscription"],
            "subscription_item": subscription_item["id"] if subscription_item else None,
            "type": "subscription" if subscription_item else "invoiceitem",
        }

    def _invoice_totals(self, invoice: dict[str, Any]) -> None:
        subtotal = sum(line["amount"] for line in invoice["lines"]["data"])
        invoice.update(
            subtotal=subtotal,
            total=subtotal + invoice["tax"],
            amount_due=subtotal + invoice["tax"],
            amount_remaining=subtotal + invoice["tax"] - invoice["amount_paid"],
        )

    def _invoice_post(self, call: Call, invoice: dict[str, Any], customer: dict[str, Any]):
        """Finalize: number it, open it (or pay it when charged automatically), announce it."""
        sequence = call.number(f"invoice_number.{customer['id']}")
        invoice["number"] = f"{customer['invoice_prefix']}-{sequence:04d}"
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = call.unix_now
        invoice["updated"] = call.unix_now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = call.unix_now + 86400 * (invoice["days_until_due"] or 0)
        call.emit(
            "invoice.posted",
            billing_invoice_posted_data(invoice),
            correlation_id=_correlation(_invoice_references(invoice)),
        )
        if invoice["collection_method"] == "charge_automatically":
            self._invoice_mark_paid(call, invoice)

    def _invoice_mark_paid(self, call: Call, invoice: dict[str, Any]) -> None:
        """Collect what remains due on the invoice in one charge (announced)."""
        self._invoice_charge(call, invoice, invoice["amount_remaining"])

    def _charge_new(
        self, call: Call, invoice: dict[str, Any], amount: int, *, failure: str | None
    ) -> dict[str, Any]:
        charge = {
            "id": call.stripe_id("ch", width=24),
            "object": "charge",
            "amount": amount,
            "amount_refunded": 0,
            "created": call.unix_now,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "failure_message": failure,
            "invoice": invoice["id"],
            "paid": failure is None,
            "refunded": False,
            "status": "failed" if failure else "succeeded",
        }
        call.collection("charges")[charge["id"]] = charge
        return charge

    def _invoice_charge(self, call: Call, invoice: dict[str, Any], amount: int) -> None:
        """A succeeded charge of ``amount`` on the invoice (``payment.received``); the invoice
        is paid once nothing remains due."""
        charge = self._charge_new(call, invoice, amount, failure=None)
        invoice["amount_paid"] += amount
        invoice["amount_remaining"] -= amount
        invoice["charge"] = charge["id"]
        if invoice["amount_remaining"] <= 0:
            invoice["amount_remaining"] = 0
            invoice["status"] = "paid"
            invoice["paid"] = True
            invoice["status_transitions"]["paid_at"] = call.unix_now
        call.emit(
            "payment.received",
            billing_payment_data(invoice, charge),
            correlation_id=_correlation(_invoice_references(invoice)),
        )
        invoice["updated"] = call.unix_now

    def invoice_create(self, call: Call) -> Reply:
        """A draft invoice with the given lines (a price's amount, or an amount given);
        finalize it to number and announce it."""
        fields = self.check(call.body, INVOICE_FIELDS)
        customer = self.lookup(
            call.collection("customers"),
            "customer",
            fields.string("customer", required=True),
            field="customer",
        )
        subscription = None
        if fields.string("subscription") is not None:
            subscription = self.lookup(
                call.collection("subscriptions"),
                "subscription",
                fields.string("subscription"),
                field="subscription",
            )
        currency = (fields.currency("currency") or "usd").lower()
        lines = self._invoice_lines_wanted(call, fields, currency)
        collection_method, days_until_due = _collection_terms(fields)
        invoice = self._invoice_new(
            call,
            customer=customer,
            currency=currency,
            collection_method=collection_method,
            days_until_due=days_until_due,
            metadata=self.metadata(fields),
            description=fields.string("description", max_length=500),
            subscription=subscription,
        )
        for price, quantity, amount, description in lines:
            invoice["lines"]["data"].append(
                self._invoice_line(
                    call,
                    invoice,
                    price=price,
                    quantity=quantity,
                    amount=amount,
                    description=description,
                )
            )
        self._invoice_totals(invoice)
        return Reply(200, invoice)

    def _invoice_lines_wanted(
        self, call: Call, fields: Fields, currency: str
    ) -> list[tuple[dict[str, Any] | None, int, int, str | None]]:
        """(price, quantity, amount, description) per line; a price must be in ``currency``."""
        prices = call.collection("prices")
        lines: list[tuple[dict[str, Any] | None, int, int, str | None]] = []
        for index, raw in enumerate(fields.items("lines", maximum=250)):
            line = fields.nested(
                raw, f"lines[{index}].", ("price", "quantity", "amount", "description")
            )
            quantity = line.integer("quantity", minimum=1) or 1
            description = line.string("description", max_length=500)
            if line.string("price") is not None:
                price = self.lookup(
                    prices, "price", line.string("price"), field=f"lines[{index}][price]"
                )
                if price["currency"] != currency:
                    raise self.invalid(
                        f"lines[{index}][price]",
                        f"The price's currency ({price['currency']}) does not match the "
                        f"invoice's ({currency}).",
                    )
                lines.append((price, quantity, price["unit_amount"] * quantity, description))
            else:
                amount = line.integer("amount", required=True)
                assert amount is not None
                lines.append((None, quantity, amount, description))
        return lines

    def _invoice(self, call: Call) -> dict[str, Any]:
        return self.lookup(call.collection("invoices"), "invoice", call.params["id"])

    def invoice_get(self, call: Call) -> Reply:
        return Reply(200, self._invoice(call))

    def invoice_list(self, call: Call) -> Reply:
        if call.arg("updated_since") is not None:
            return self._changes(call, "invoices")
        customer, subscription, status = (
            call.arg("customer"),
            call.arg("subscription"),
            call.arg("status"),
        )
        wanted = call.metadata_filter()
        found = [
            invoice
            for invoice in call.collection("invoices").values()
            if (customer is None or invoice["customer"] == customer)
            and (subscription is None or invoice["subscription"] == subscription)
            and (status is None or invoice["status"] == status)
            and metadata_matches(invoice, wanted)
        ]
        return Reply(200, list_object("/billing/invoices", found, self._limit(call)))

    def invoice_finalize(self, call: Call) -> Reply:
        invoice = self._invoice(call)
        self.check(call.body, ("auto_advance",))
        if invoice["status"] != "draft":
            raise ApiError(
                400,
                "invoice_not_editable",
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            )
        if not invoice["lines"]["data"]:
            raise ApiError(
                400, "invoice_no_line_items", "This invoice has no line items to finalize."
            )
        customer = call.collection("customers")[invoice["customer"]]
        self._invoice_post(call, invoice, customer)
        return Reply(200, invoice)

    def invoice_pay(self, call: Call) -> Reply:
        """Collect on an open invoice: all that remains due, or ``amount`` (minor units) of
        it (a partial payment). ``payment_method`` ``pm_card_chargeDeclined`` declines, as
        Stripe's test card does: a 402 and ``payment.failed``, the invoice still open."""
        invoice = self._invoice(call)
        fields = self.check(call.body, ("paid_out_of_band", "amount", "payment_method"))
        if invoice["status"] != "open":
            raise ApiError(
                400,
                "invoice_unexpected_state",
                f"You cannot pay an invoice with status {invoice['status']}.",
            )
        amount = fields.integer("amount", minimum=1) or invoice["amount_remaining"]
        if amount > invoice["amount_remaining"]:
            raise self.invalid(
                "amount",
                f"The amount {amount} exceeds the {invoice['amount_remaining']} remaining.",
            )
        if fields.string("payment_method") == DECLINING_CARD:
            charge = self._charge_new(call, invoice, amount, failure="Your card was declined.")
            call.emit(
                "payment.failed",
                billing_payment_failed_data(invoice, charge),
                correlation_id=_correlation(_invoice_references(invoice)),
            )
            return Reply(
                402,
                {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "message": "Your card was declined.",
                        "charge": charge["id"],
                    }
                },
            )
        self._invoice_charge(call, invoice, amount)
        return Reply(200, invoice)

    # --- charges, refunds, credit notes -------------------------------------------------
    def charge_list(self, call: Call) -> Reply:
        invoice = call.arg("invoice")
        found = [
            charge
            for charge in call.collection("charges").values()
            if invoice is None or charge["invoice"] == invoice
        ]
        return Reply(200, list_object("/billing/charges", found, self._limit(call)))

    def refund_create(self, call: Call) -> Reply:
        """Give back ``amount`` (all that is left unless given) of a succeeded charge;
        announced (``payment.refunded``)."""
        fields = self.check(call.body, ("charge", "amount", "reason", "metadata"))
        charge = self.lookup(
            call.collection("charges"),
            "charge",
            fields.string("charge", required=True),
            field="charge",
        )
        left = charge["amount"] - charge["amount_refunded"]
        if charge["status"] != "succeeded" or left <= 0:
            raise ApiError(
                400,
                "charge_already_refunded",
                f"Charge {charge['id']} has already been refunded or did not succeed.",
            )
        amount = fields.integer("amount", minimum=1) or left
        if amount > left:
            raise self.invalid(
                "amount", f"Refund amount ({amount}) is greater than unrefunded amount ({left})."
            )
        reason = fields.choice("reason", ("duplicate", "fraudulent", "requested_by_customer"))
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund = {
            "id": call.stripe_id("re", width=24),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": call.unix_now,
            "currency": charge["currency"],
            "metadata": self.metadata(fields),
            "reason": reason,
            "status": "succeeded",
        }
        call.collection("refunds")[refund["id"]] = refund
        invoice = call.collection("invoices").get(charge["invoice"]) or {}
        call.emit(
            "payment.refunded",
            billing_refund_data(refund, charge),
            correlation_id=_correlation(_invoice_references(invoice)) if invoice else None,
        )
        return Reply(200, refund)

    def refund_list(self, call: Call) -> Reply:
        charge = call.arg("charge")
        found = [r for r in call.collection("refunds").values() if charge in (None, r["charge"])]
        return Reply(200, list_object("/billing/refunds", found, self._limit(call)))

    def credit_note_create(self, call: Call) -> Reply:
        """A credit note of ``amount`` on an open or paid invoice (never more than it has
        left to credit); on an open invoice it lowers what remains due. Announced
        (``credit_note.issued``)."""
        fields = self.check(call.body, ("invoice", "amount", "reason", "memo", "metadata"))
        invoice = self.lookup(
            call.collection("invoices"),
            "invoice",
            fields.string("invoice", required=True),
            field="invoice",
        )
        if invoice["status"] not in ("open", "paid"):
            raise ApiError(
                400,
                "invoice_unexpected_state",
                f"You can only credit an open or paid invoice; this one is {invoice['status']}.",
            )
        amount = fields.integer("amount", required=True, minimum=1)
        assert amount is not None
        credited = sum(
            note["amount"]
            for note in call.collection("credit_notes").values()
            if note["invoice"] == invoice["id"]
        )
        if credited + amount > invoice["total"]:
            raise self.invalid(
                "amount",
                f"The credit note amount ({amount}) exceeds the "
                f"{invoice['total'] - credited} left to credit on the invoice.",
            )
        reason = fields.choice(
            "reason",
            ("duplicate", "fraudulent", "order_change", "product_unsatisfactory"),
        )
        if invoice["status"] == "open":
            invoice["amount_remaining"] = max(invoice["amount_remaining"] - amount, 0)
            if invoice["amount_remaining"] == 0:
                invoice["status"] = "paid"
                invoice["paid"] = True
                invoice["status_transitions"]["paid_at"] = call.unix_now
        number = call.number(f"credit_note.{invoice['id']}")
        note = {
            "id": call.stripe_id("cn", width=24),
            "object": "credit_note",
            "amount": amount,
            "created": call.unix_now,
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "invoice": invoice["id"],
            "memo": fields.string("memo", max_length=500),
            "metadata": self.metadata(fields),
            "number": f"{invoice['number']}-CN-{number:02d}",
            "reason": reason,
            "status": "issued",
        }
        call.collection("credit_notes")[note["id"]] = note
        call.emit(
            "credit_note.issued",
            billing_credit_note_data(note),
            correlation_id=_correlation(_invoice_references(invoice)),
        )
        return Reply(200, note)

    def credit_note_list(self, call: Call) -> Reply:
        invoice = call.arg("invoice")
        found = [
            note
            for note in call.collection("credit_notes").values()
            if invoice in (None, note["invoice"])
        ]
        return Reply(200, list_object("/billing/credit_notes", found, self._limit(call)))

    def invoice_void(self, call: Call) -> Reply:
        invoice = self._invoice(call)
        self.check(call.body, ())
        if invoice["status"] != "open":
            raise ApiError(
                400,
                "invoice_unexpected_state",
                f"You can only void an open invoice; this one is {invoice['status']}.",
            )
        invoice["status"] = "void"
        invoice["amount_remaining"] = 0
        invoice["status_transitions"]["voided_at"] = call.unix_now
        call.emit(
            "invoice.voided",
            {
                "external_invoice_id": invoice["id"],
                "invoice_number": invoice["number"],
                "voided_at": iso_utc(call.now),
            },
            correlation_id=_correlation(_invoice_references(invoice)),
        )
        invoice["updated"] = call.unix_now
        return Reply(200, invoice)


DECLINING_CARD = "pm_card_chargeDeclined"


def _unix_iso(timestamp: int) -> str:
    return iso_utc(dt.datetime.fromtimestamp(timestamp, dt.UTC))


def billing_payment_data(invoice: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
    """The canonical ``payment.received`` payload for a succeeded charge on an invoice."""
    return {
        "external_payment_id": charge["id"],
        "external_invoice_id": invoice["id"],
        "invoice_number": invoice["number"],
        "amount": minor_to_decimal(charge["amount"], charge["currency"]),
        "currency": charge["currency"].upper(),
        "received_at": _unix_iso(charge["created"]),
        "method": "card",
    }


def billing_payment_failed_data(invoice: dict[str, Any], charge: dict[str, Any]):
    """The canonical ``payment.failed`` payload for a failed charge on an invoice."""
    return {
        "external_payment_id": charge["id"],
        "external_invoice_id": invoice["id"],
        "amount": minor_to_decimal(charge["amount"], charge["currency"]),
        "currency": charge["currency"].upper(),
        "failed_at": _unix_iso(charge["created"]),
        "failure_reason": charge["failure_message"],
        "method": "card",
    }


def billing_refund_data(refund: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
    """The canonical ``payment.refunded`` payload for a refund of a charge."""
    return {
        "external_refund_id": refund["id"],
        "external_payment_id": charge["id"],
        "external_invoice_id": charge["invoice"],
        "amount": minor_to_decimal(refund["amount"], refund["currency"]),
        "currency": refund["currency"].upper(),
        "refunded_at": _unix_iso(refund["created"]),
        "reason": refund["reason"] or "",
    }


def billing_credit_note_data(note: dict[str, Any]) -> dict[str, Any]:
    """The canonical ``credit_note.issued`` payload for an issued credit note."""
    return {
        "external_credit_note_id": note["id"],
        "credit_note_number": note["number"],
        "external_invoice_id": note["invoice"],
        "amount": minor_to_decimal(note["amount"], note["currency"]),
        "currency": note["currency"].upper(),
        "issued_at": _unix_iso(note["created"]),
        "reason": note["memo"] or note["reason"] or "",
    }


def _collection_terms(fields: Fields) -> tuple[str, int | None]:
    """How the invoices are collected (``send_invoice`` unless told) and their days until
    due (30 for ``send_invoice`` unless told)."""
    collection_method = fields.choice("collection_method", COLLECTION_METHODS) or "send_invoice"
    days_until_due = fields.integer("days_until_due", minimum=0)
    if collection_method == "send_invoice" and days_until_due is None:
        days_until_due = 30
    return collection_method, days_until_due


def _correlation(references: dict[str, str]) -> str | None:
    return references.get("tandem_order") or references.get("tandem_contract")


def _invoice_references(invoice: dict[str, Any]) -> dict[str, str]:
    references = dict((invoice.get("subscription_details") or {}).get("metadata") or {})
    references.update(invoice["metadata"])
    return references


def subscription_activated_data(
    subscription: dict[str, Any], activated_at: dt.datetime
) -> dict[str, Any]:
    """The canonical ``subscription.activated`` payload."""
    metadata = subscription["metadata"]
    data: dict[str, Any] = {
        "contract_id": metadata.get("tandem_contract"),
        "billing_subscription_id": subscription["id"],
        "billing_customer_id": subscription["customer"],
        "activated_at": iso_utc(activated_at),
        "current_period_start": unix_date(subscription["current_period_start"]),
        "current_period_end": unix_date(subscription["current_period_end"] - 86400),
    }
    if metadata.get("tandem_order"):
        data["order_id"] = metadata["tandem_order"]
    return data


def billing_invoice_posted_data(invoice: dict[str, Any]) -> dict[str, Any]:
    """The canonical ``invoice.posted`` payload for a finalized billing invoice."""
    currency = invoice["currency"]
    references = _invoice_references(invoice)
    lines = []
    for line in invoice["lines"]["data"]:
        price = line["price"] or {}
        unit = price.get("unit_amount")
        if unit is None:
            unit = line["amount"] // line["quantity"] if line["quantity"] else line["amount"]
        product_code = (price.get("metadata") or {}).get("product_code") or price.get("lookup_key")
        entry = {
            "description": line["description"],
            "quantity": str(line["quantity"]),
            "unit_price": minor_to_decimal(unit, currency),
            "amount": minor_to_decimal(line["amount"], currency),
        }
        if product_code:
            entry["product_code"] = product_code
        lines.append(entry)
    finalized = invoice["status_transitions"]["finalized_at"]
    return {
        "external_invoice_id": invoice["id"],
        "invoice_number": invoice["number"],
        "order_id": references.get("tandem_order"),
        "contract_id": references.get("tandem_contract"),
        "billing_customer_id": invoice["customer"],
        "billing_subscription_id": invoice["subscription"],
        "currency": currency.upper(),
        "total_amount": minor_to_decimal(invoice["total"], currency),
        "tax_amount": minor_to_decimal(invoice["tax"], currency),
        "issue_date": unix_date(finalized),
        "due_date": unix_date(invoice["due_date"]) if invoice["due_date"] else None,
        "lines": lines,
    }
