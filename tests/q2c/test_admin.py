"""The Django admin: every model and its history open, state is read-only, actions audit."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.identifiers import PREFIXES, identifier_allocate
from core.tokens import api_token_issue
from masterdata.models import AccountAlias, DuplicateCandidate
from masterdata.services import merges as md_merges
from masterdata.services import records as md
from q2c import services
from q2c.models import CreditNote, Order, OrderState, UsageRecord
from tandem.models import WorkerHeartbeat
from tests import factories

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def superuser(db: Any) -> Any:
    return get_user_model().objects.create_superuser(
        username="root", password="pw", email="root@example.com"
    )


@pytest.fixture
def admin_client(client: Any, superuser: Any) -> Any:
    client.force_login(superuser)
    return client


def seed_every_registered_model(superuser: Any) -> None:
    """At least one row of every model the admin shows, built through services where they exist."""
    actor = factories.actor()
    account = factories.account()
    product = factories.product()
    md.product_map(
        product=product, system="erp", external_id="ITEM-1", actor=actor, reason="test setup"
    )
    md.external_id_link(
        record=account, system="crm", object_type="account", external_id="001A",
        actor=actor, reason="test setup",
    )  # fmt: skip
    AccountAlias.objects.create(alias="ACC-999999", account=account)
    quote_ = services.quote_create(
        cpq_quote_id="Q-1",
        account=account,
        legal_entity=account.legal_entity,
        currency="GBP",
        approved_at=timezone.now(),
        lines=[factories.line(product_code=product.sku)],
        actor=actor,
        reason="test setup",
    )
    services.quote_convert_to_order(quote=quote_, actor=actor, reason="test setup")
    contract = factories.contract(account=account)
    invoice = factories.invoice(account=account)
    services.payment_record(
        account=account,
        amount=invoice.total,
        received_at=timezone.now(),
        actor=actor,
        reason="test setup",
    )
    CreditNote.objects.create(
        enterprise_id=identifier_allocate(prefix=PREFIXES["credit_note"]),
        invoice=invoice,
        account=account,
        currency="GBP",
        amount=Decimal("10.00"),
        reason="goodwill",
    )
    UsageRecord.objects.create(
        enterprise_id=identifier_allocate(prefix=PREFIXES["usage"]),
        contract=contract,
        product=product,
        quantity=Decimal("3"),
        occurred_at=timezone.now() - dt.timedelta(hours=1),
        source_system="billing",
        source_event_id="evt-1",
    )
    twin = factories.account()
    DuplicateCandidate.objects.create(
        account_a=account, account_b=twin, score=Decimal("0.9"), evidence={},
        fingerprint="f", detected_at=timezone.now(),
    )  # fmt: skip
    md_merges.merge_request(
        survivor=account, loser=twin, actor=Actor.person(superuser), reason="test setup"
    )
    WorkerHeartbeat.objects.create(hostname="worker-1", seen_at=timezone.now())
    api_token_issue(user=superuser)


def minimal_row(model: type[models.Model]) -> Any:
    """A row holding only what the schema requires, for models of apps not seeded above.

    Other apps register models as they grow; this keeps "every registered model" true without
    this file knowing each one. A model it cannot build needs an explicit seed above.
    """
    values: dict[str, Any] = {}
    for f in model._meta.concrete_fields:
        if isinstance(f, models.AutoField) or f.has_default() or f.null:
            continue
        if f.blank and isinstance(f, models.CharField | models.TextField):
            continue
        if f.is_relation:
            related = f.related_model
            values[f.name] = related._default_manager.order_by("pk").first() or minimal_row(related)
        elif f.choices:
            values[f.attname] = f.choices[0][0]
        elif isinstance(f, models.BooleanField):
            values[f.attname] = False
        elif isinstance(f, models.DateTimeField):
            values[f.attname] = timezone.now()
        elif isinstance(f, models.DateField):
            values[f.attname] = timezone.localdate()
        elif isinstance(f, models.DecimalField | models.IntegerField | models.FloatField):
            values[f.attname] = 1
        elif isinstance(f, models.JSONField):
            values[f.attname] = {}
        elif isinstance(f, models.UUIDField):
            values[f.attname] = uuid.uuid4()
        elif isinstance(f, models.CharField | models.TextField):
            values[f.attname] = "seed"
        else:
            raise TypeError(f"seed a {model._meta.label} explicitly: cannot fill {f.name}")
    return model._default_manager.create(**values)


@pytest.mark.django_db
def test_every_registered_model_opens_its_changelist_and_history(admin_client, superuser):
    # given
    seed_every_registered_model(superuser)
    # when / then
    for model in REGISTERED:
        opts = model._meta
        obj = model._default_manager.order_by("pk").first()
        if obj is None:
            assert opts.app_label not in {"auth", "core", "q2c", "masterdata"}, (
                f"seed a {opts.label} in seed_every_registered_model"
            )
            obj = minimal_row(model)
        changelist = admin_client.get(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        )
        assert (opts.label, changelist.status_code) == (opts.label, 200)
        assert (opts.label, changelist.context["cl"].result_count) == (
            opts.label,
            model._default_manager.count(),
        )
        history = admin_client.get(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[quote(obj.pk)])
        )
        assert (opts.label, history.status_code) == (opts.label, 200)
        manager = getattr(opts, "simple_history_manager_attribute", None)
        if manager:
            rows = getattr(obj, manager).count()
            assert (opts.label, history.context["page_obj"].paginator.count) == (opts.label, rows)
            assert rows >= 1


@pytest.mark.django_db
def test_order_history_page_shows_who_and_why(admin_client):
    # given
    order = factories.order()
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    # when
    response = admin_client.get(f"/admin/q2c/order/{order.pk}/history/")
    # then
    assert response.status_code == 200
    records = list(response.context["page_obj"])
    assert [(r.state, r.history_user.username, r.history_change_reason) for r in records] == [
        ("on_hold", "worker", "credit check"),
        ("received", "worker", "test setup"),
        ("received", "worker", "test setup"),
    ]
    assert "credit check" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "term, expected",
    [("ORD-000002", ["ORD-000002"]), ("ord-00000", ["ORD-000003", "ORD-000002", "ORD-000001"])],
)
def test_order_search_finds_orders_by_enterprise_id(admin_client, term, expected):
    # given
    for _ in range(3):
        factories.order()
    # when
    response = admin_client.get(reverse("admin:q2c_order_changelist"), {"q": term})
    # then
    assert response.status_code == 200
    assert [o.enterprise_id for o in response.context["cl"].result_list] == expected


@pytest.mark.django_db
def test_order_search_finds_orders_by_customer_enterprise_id(admin_client):
    # given
    first = factories.order()
    factories.order()
    # when
    response = admin_client.get(
        reverse("admin:q2c_order_changelist"), {"q": first.account.enterprise_id}
    )
    # then
    assert [o.enterprise_id for o in response.context["cl"].result_list] == [first.enterprise_id]


@pytest.mark.django_db
def test_order_state_is_read_only_on_the_change_form(admin_client):
    # given
    order = factories.order()
    # when
    response = admin_client.get(reverse("admin:q2c_order_change", args=[order.pk]))
    # then
    assert response.status_code == 200
    adminform = response.context["adminform"]
    assert "state" in adminform.readonly_fields
    assert "enterprise_id" in adminform.readonly_fields
    assert "state" not in adminform.form.fields
    assert 'name="state"' not in response.content.decode()


def release_action(admin_client: Any, *orders: Order) -> Any:
    return admin_client.post(
        reverse("admin:q2c_order_changelist"),
        {
            "action": "action_order_release",
            ACTION_CHECKBOX_NAME: [str(order.pk) for order in orders],
            "index": "0",
        },
        follow=True,
    )


@pytest.mark.django_db
def test_release_from_hold_action_releases_as_the_admin(admin_client, superuser):
    # given
    order = factories.order()
    services.order_validate(order=order, actor=factories.actor(), reason="checked")
    services.order_hold(order=order, actor=factories.actor(), reason="credit check")
    # when
    response = release_action(admin_client, order)
    # then
    assert [m.message for m in response.context["messages"]] == ["Release from hold: 1 done"]
    order.refresh_from_db()
    assert (order.state, order.held_from_state, order.hold_reason) == (
        OrderState.VALIDATED,
        "",
        "",
    )
    last = order.history.order_by("-history_id").first()
    assert (last.state, last.history_user, last.history_change_reason) == (
        "validated",
        superuser,
        "admin action: Release from hold",
    )


@pytest.mark.django_db
def test_release_from_hold_action_reports_orders_not_on_hold_and_leaves_them(admin_client):
    # given
    held = factories.order()
    services.order_hold(order=held, actor=factories.actor(), reason="credit check")
    not_held = factories.order()
    history_before = not_held.history.count()
    # when
    response = release_action(admin_client, held, not_held)
    # then
    assert [(m.level_tag, m.message) for m in response.context["messages"]] == [
        ("success", "Release from hold: 1 done"),
        (
            "error",
            f"{not_held.enterprise_id}: {not_held.enterprise_id} cannot 'release' while "
            "'received' (allowed from: on_hold)",
        ),
    ]
    held.refresh_from_db()
    not_held.refresh_from_db()
    assert (held.state, not_held.state) == (OrderState.RECEIVED, OrderState.RECEIVED)
    assert not_held.history.count() == history_before
