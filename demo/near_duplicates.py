"""The demo's near-duplicate customers: the same companies as another system keyed them.

Loaded by ``seed_demo`` after the demo dataset, then detection runs once so the stewards'
queue has candidates with evidence; the beat schedule runs it again periodically.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.audit import Actor
from masterdata.models import Account, Product
from masterdata.services import records as md

# (twin of the demo account with this legal name, how the other system has it)
NEAR_DUPLICATES: list[tuple[str, dict[str, str]]] = [
    ("Brightwater Analytics, Inc.", {
        "legal_name": "BRIGHTWATER ANALYTICS INC", "domain": "https://www.brightwater-analytics.com/",
        "tax_id": "473816290", "address_line1": "500 Howard St, Ste 400",
        "city": "San Francisco", "postcode": "94105", "phone": "(415) 555-0142",
        "system": "billing", "external_id": "cus_Qd7BrWtrAnl02x",
    }),
    ("Alder & Finch Ltd", {
        "legal_name": "Alder and Finch Limited", "domain": "", "tax_id": "",
        "address_line1": "14 Finsbury Circus", "city": "London", "postcode": "EC2M7EB",
        "phone": "020 7946 0321", "email": "accounts@alderfinch.co.uk",
        "system": "crm", "external_id": "001Hs00003AFL99QAF",
    }),
    ("Nordlicht Maschinenbau GmbH", {
        "legal_name": "Nordlicht Maschinenbau", "domain": "nordlicht-maschinenbau.de",
        "tax_id": "DE812457390", "address_line1": "Am Sandtorkai 5", "city": "Hamburg",
        "postcode": "20457", "system": "erp", "external_id": "C-300199",
    }),
]  # fmt: skip


def demo_near_duplicates_seed(*, actor: Actor, reason: str) -> list[Account]:
    """Create each twin (with its crosswalk id and one received order) once."""
    from q2c import services as q2c_services

    product = (
        Product.objects.filter(kind="recurring", billing_period="month").order_by("sku").first()
    )
    created = []
    with transaction.atomic():
        for original_name, values in NEAR_DUPLICATES:
            original = Account.objects.filter(legal_name=original_name).first()
            if original is None or Account.objects.filter(legal_name=values["legal_name"]).exists():
                continue
            details: dict[str, Any] = {
                key: value for key, value in values.items()
                if key not in {"legal_name", "system", "external_id"}
            }  # fmt: skip
            twin = md.account_create(
                legal_name=values["legal_name"], country=original.country,
                currency=original.currency, legal_entity=original.legal_entity, actor=actor,
                reason=reason, **details,
            )  # fmt: skip
            md.external_id_link(
                record=twin, system=values["system"], object_type="account",
                external_id=values["external_id"], actor=actor, reason=reason,
            )  # fmt: skip
            if product is not None and original.legal_entity is not None:
                start = timezone.localdate() + dt.timedelta(days=7)
                q2c_services.order_create(
                    account=twin, legal_entity=original.legal_entity, currency=twin.currency,
                    lines=[q2c_services.LineInput(
                        product_code=product.sku, product=product, kind=product.kind,
                        quantity=Decimal("5"), unit_price=Decimal("40.00"),
                        billing_period=product.billing_period, term_start=start,
                        term_end=start + dt.timedelta(days=364),
                    )],
                    actor=actor, reason=reason,
                )  # fmt: skip
            created.append(twin)
    return created
