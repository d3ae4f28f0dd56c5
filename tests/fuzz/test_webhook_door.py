"""≥ 10,000 generated webhook deliveries through the Django test client to /webhooks/<system>/:
signed and unsigned, valid-ish (mutated schema examples) and hostile (arbitrary bytes, deep
nesting, odd headers). None is answered 5xx, each stores exactly one delivery row (or counts a
duplicate on the first), an unauthenticated one keeps at most a prefix of its body, and no
other table is written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from hypothesis import given
from hypothesis import strategies as st

from core.records import SYSTEMS
from orchestration.events.catalog import EVENT_SOURCES, SCHEMA_DIR
from orchestration.events.services import UNAUTHENTICATED_BODY_KEPT
from orchestration.events.signatures import signature_header
from orchestration.models import InboundEvent
from tests.fuzz.conftest import fuzz_settings, json_values, mutations_of

WEBHOOK_BODIES = 10_000

EXAMPLES = [
    (system, {**json.loads(path.read_text())["examples"][0], "event_type": event_type})
    for event_type, systems in EVENT_SOURCES.items()
    for path in sorted(Path(SCHEMA_DIR, event_type).glob("v*.json"))
    for system in sorted(systems)
]


MUTATIONS = {id(example): mutations_of(example) for _, example in EXAMPLES}


@st.composite
def payload_bytes(draw: st.DrawFn, system: str) -> bytes:
    kind = draw(st.sampled_from(["example", "mutated", "json", "bytes", "deep", "text"]))
    if kind in ("example", "mutated"):
        _, example = draw(st.sampled_from([e for e in EXAMPLES if e[0] == system] or EXAMPLES))
        document = example if kind == "example" else draw(MUTATIONS[id(example)])
        document = {**document, "event_id": f"evt_fuzz_{draw(st.integers(0, 10**9))}"}
        return json.dumps(document).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=20, max_value=3000))
        return draw(st.sampled_from([b"[", b'{"a":'])) * depth
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", errors="surrogatepass")
    return draw(st.binary(max_size=300))


@st.composite
def deliveries(draw: st.DrawFn) -> dict[str, Any]:
    system = draw(st.sampled_from(SYSTEMS))
    body = draw(payload_bytes(system))
    signing = draw(st.sampled_from(["valid", "valid", "none", "wrong_secret", "stale", "garbage"]))
    return {"system": system, "body": body, "signing": signing,
            "garbage": draw(st.text(max_size=60)),
            "content_type": draw(st.sampled_from(["application/json", "text/plain", ""])),
            "correlation": draw(st.none() | st.text(max_size=80))}  # fmt: skip


def _headers(delivery: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    signing, body = delivery["signing"], delivery["body"]
    secret = secrets[delivery["system"]]
    headers: dict[str, str] = {}
    if signing == "valid":
        headers["HTTP_X_TANDEM_SIGNATURE"] = signature_header(secret=secret, body=body)
    elif signing == "wrong_secret":
        headers["HTTP_X_TANDEM_SIGNATURE"] = signature_header(secret="whsec_other", body=body)
    elif signing == "stale":
        stale = int(time.time()) - 3600
        headers["HTTP_X_TANDEM_SIGNATURE"] = signature_header(
            secret=secret, body=body, timestamp=stale
        )
    elif signing == "garbage":
        headers["HTTP_X_TANDEM_SIGNATURE"] = delivery["garbage"]
    if delivery["correlation"] is not None:
        headers["HTTP_X_CORRELATION_ID"] = delivery["correlation"]
    return headers


def _table_counts() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models()
        if model is not InboundEvent and model._meta.managed and not model._meta.proxy
    }


@pytest.mark.django_db
def test_generated_deliveries_never_5xx_and_write_only_their_delivery_row(client, webhook_secrets):
    # given
    others_before = _table_counts()
    answered: dict[int, int] = {}
    unauthenticated = signed_stored = 0

    @given(delivery=deliveries())
    @fuzz_settings(WEBHOOK_BODIES)
    def delivered(delivery: dict[str, Any]) -> None:
        nonlocal unauthenticated, signed_stored
        # when
        response = client.generic(
            "POST", f"/webhooks/{delivery['system']}/", data=delivery["body"],
            content_type=delivery["content_type"], **_headers(delivery, webhook_secrets),
        )  # fmt: skip
        # then: never a server error; a reasoned refusal for anything not signed
        status = response.status_code
        answered[status] = answered.get(status, 0) + 1
        assert status < 500, response.content[:300]
        assert response.json()["status"] == {200: "duplicate", 202: "accepted"}.get(
            status, "rejected"
        )
        if delivery["signing"] != "valid":
            unauthenticated += 1
            assert 400 <= status < 500
        elif status != 200:
            signed_stored += 1

    delivered()
    # then: one delivery row per signed answer that was not a duplicate; every unauthenticated
    # delivery stored or counted on the row of the same refusal from the same address; bodies
    # of unauthenticated ones cut to a prefix, and nothing written anywhere else
    assert InboundEvent.objects.filter(signature_valid=True).count() == signed_stored
    unsigned = InboundEvent.objects.filter(signature_valid=False)
    repeats = sum(unsigned.values_list("duplicate_deliveries", flat=True))
    assert unsigned.count() + repeats == unauthenticated
    longest = max(
        (len(body.encode()) for body in InboundEvent.objects.filter(signature_valid=False)
         .values_list("raw_body", flat=True)), default=0,
    )  # fmt: skip
    assert longest <= UNAUTHENTICATED_BODY_KEPT * 3  # an undecodable byte is stored as U+FFFD
    assert _table_counts() == others_before
    assert sum(answered.values()) >= WEBHOOK_BODIES
    assert {202, 400, 401} <= set(answered)


# What the generated deliveries found (each was a 500 before).


@pytest.mark.django_db
def test_a_nul_character_anywhere_in_a_delivery_is_stored_replaced_not_a_500(
    client, webhook_secrets
):
    # given
    signed = json.dumps({"event_id": "evt_nul", "event_type": "quote.approved",
                         "schema_version": "\u0000"}).encode()  # fmt: skip
    # when
    unsigned = client.generic("POST", "/webhooks/cpq/", data=b'{"a": "x\x00y"}',
                              content_type="application/json")  # fmt: skip
    accepted = client.generic(
        "POST", "/webhooks/cpq/", data=signed, content_type="application/json",
        HTTP_X_TANDEM_SIGNATURE=signature_header(secret=webhook_secrets["cpq"], body=signed),
    )  # fmt: skip
    # then
    assert (unsigned.status_code, accepted.status_code) == (401, 400)  # the schema, at the door
    rows = list(InboundEvent.objects.order_by("pk").values_list("raw_body", "schema_version"))
    assert rows == [('{"a": "x\ufffdy"}', ""), (signed.decode(), "\ufffd")]


@pytest.mark.django_db
def test_a_signed_delivery_refused_at_the_door_under_a_stored_event_id_is_kept_apart(
    client, webhook_secrets
):
    # given: an event accepted under evt_same
    _, example = next(e for e in EXAMPLES if e[0] == "cpq")
    first = json.dumps({**example, "event_id": "evt_same"}).encode()
    refused = json.dumps({"event_id": "evt_same"}).encode()  # no event_type
    secret = webhook_secrets["cpq"]
    client.generic("POST", "/webhooks/cpq/", data=first, content_type="application/json",
                   HTTP_X_TANDEM_SIGNATURE=signature_header(secret=secret, body=first))  # fmt: skip
    # when: a malformed delivery under the same id
    response = client.generic(
        "POST", "/webhooks/cpq/", data=refused, content_type="application/json",
        HTTP_X_TANDEM_SIGNATURE=signature_header(secret=secret, body=refused),
    )  # fmt: skip
    # then: refused with its reason and stored apart (once a 500); the original untouched
    assert response.status_code == 400
    assert response.json()["status"] == "rejected"
    original, kept = InboundEvent.objects.order_by("pk")
    assert (original.raw_body, original.duplicate_deliveries) == (first.decode(), 0)
    assert (kept.raw_body, kept.status) == (refused.decode(), "rejected")
