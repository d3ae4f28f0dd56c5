import importlib
import json

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group

from orchestration.models import InboundEvent, OutboundCall


@pytest.mark.django_db
def test_inbound_event_admin_shows_the_body_redacted_and_is_read_only(admin_client):
    # given
    raw = json.dumps({"event_id": "evt_1", "data": {"account": {"tax_id": "GB999888777"}}})
    event = InboundEvent.objects.create(system="cpq", event_id="evt_1", signature_valid=True,
                                        raw_body=raw)  # fmt: skip
    # when
    page = admin_client.get(f"/admin/orchestration/inboundevent/{event.pk}/change/")
    add = admin_client.get("/admin/orchestration/inboundevent/add/")
    # then
    assert page.status_code == 200
    content = page.content.decode()
    assert "GB999888777" not in content
    assert "[redacted]" in content
    assert add.status_code == 403


@pytest.mark.django_db
def test_outbound_call_admin_lists_calls_and_refuses_changes(admin_client):
    # given
    call = OutboundCall.objects.create(system="erp", operation="ping", method="GET", path="/erp/",
                                       outcome="ok", status_code=200, latency_ms=3)  # fmt: skip
    # when
    listing = admin_client.get("/admin/orchestration/outboundcall/")
    change = admin_client.post(f"/admin/orchestration/outboundcall/{call.pk}/change/",
                               {"operation": "changed"})  # fmt: skip
    # then
    assert listing.status_code == 200
    assert change.status_code == 403
    assert OutboundCall.objects.get().operation == "ping"


@pytest.mark.django_db
def test_the_roles_migration_lets_auditors_view_the_orchestration_logs():
    # given
    migration = importlib.import_module("orchestration.migrations.0002_roles")
    # when
    migration.sync(django_apps, None)
    # then
    perms = set(
        Group.objects.get(name="auditor")
        .permissions.filter(content_type__app_label="orchestration")
        .values_list("codename", flat=True)
    )
    assert {"view_inboundevent", "view_outboundcall"} <= perms
    assert not any(codename.startswith(("add_", "change_", "delete_")) for codename in perms)
