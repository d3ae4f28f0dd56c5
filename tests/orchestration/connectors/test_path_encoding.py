"""No id can steer a connector's call to another path of the system's host: the transport
percent-encodes every path segment (one place), and each connector method that puts an id in
its path is tried here with traversal, query and fragment characters in that id."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from orchestration.connectors.errors import PermanentError
from orchestration.connectors.interfaces import Party
from orchestration.connectors.sandbox.billing import SandboxBilling
from orchestration.connectors.sandbox.cpq import SandboxCpq
from orchestration.connectors.sandbox.crm import SandboxCrm
from orchestration.connectors.sandbox.erp import SandboxErp
from orchestration.connectors.transport import Transport
from orchestration.models import OutboundCall

PARTY = Party(reference="ACC-000001", name="Northwind Traders Ltd", country="GB", currency="GBP")
HOSTILE_IDS = [
    "001TRAV/../../../_control/faults",
    "x?admin=1#frag",
    "%2e%2e%2f_control",
    "a b\\c",
]

# (system, the call with the hostile id, the path it must reach, with the id as one segment)
CALLS: list[tuple[str, Callable[[Any, str], Any], Callable[[str], str]]] = [
    ("cpq", lambda c, i: c.quote_get(quote_id=i), lambda e: f"/cpq/quotes/{e}"),
    ("billing", lambda c, i: c.subscription_get(subscription_id=i),
     lambda e: f"/billing/subscriptions/{e}"),
    ("billing", lambda c, i: c.subscription_update(
        subscription_id=i, items=[("price_1", Decimal(1))], idempotency_key="k"),
     lambda e: f"/billing/subscriptions/{e}"),
    ("billing", lambda c, i: c.subscription_cancel(subscription_id=i, idempotency_key="k"),
     lambda e: f"/billing/subscriptions/{e}"),
    ("crm", lambda c, i: c.account_merge(survivor_id=i, loser_id="001B", idempotency_key="k"),
     lambda e: f"/crm/accounts/{e}/merge"),
    ("erp", lambda c, i: c.sales_order_cancel(sales_order_id=i, idempotency_key="k"),
     lambda e: f"/erp/salesorders/{e}/cancel"),
    ("erp", lambda c, i: c.customer_update(customer_id=i, party=PARTY, idempotency_key="k"),
     lambda e: f"/erp/customers/{e}"),
    ("billing", lambda c, i: c.customer_update(customer_id=i, party=PARTY, idempotency_key="k"),
     lambda e: f"/billing/customers/{e}"),
]  # fmt: skip
CONNECTORS = {"cpq": SandboxCpq, "billing": SandboxBilling, "crm": SandboxCrm, "erp": SandboxErp}


@pytest.fixture
def every_system_at_remote(settings: Any, remote: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for system in CONNECTORS:
        monkeypatch.setenv(f"CONNECTOR_{system.upper()}_API_KEY", f"sk_{system}")
    settings.TANDEM_CONNECTORS = {
        **settings.TANDEM_CONNECTORS,
        **{
            system: {
                "base_url": f"{remote.url}/{system}/",
                "credential_env": f"CONNECTOR_{system.upper()}_API_KEY",
                "connect_timeout": 2.0,
                "read_timeout": 2.0,
                "rate_limit_per_second": 1000.0,
            }
            for system in CONNECTORS
        },
    }
    remote.respond(404, json_body={"error": {"message": "no such record"}})
    return remote


# Transactional (the transport refuses to call inside a transaction): one test per call, every
# hostile id tried in it, keeps the table flushes few.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "system, call, expected", CALLS, ids=[f"{c[0]}-{n}" for n, c in enumerate(CALLS)]
)
def test_an_id_is_one_encoded_segment_of_the_path_it_was_meant_for(
    every_system_at_remote, system, call, expected
):
    # given
    connector = CONNECTORS[system](Transport.for_system(system))
    for hostile in HOSTILE_IDS:
        # when
        with pytest.raises(PermanentError):
            call(connector, hostile)
    # then: each request reached exactly the record's path, the id encoded as one segment
    # (a call's own query string, such as a cancellation's ``?prorate=true``, is not the path)
    paths = [sent.path.partition("?")[0] for sent in every_system_at_remote.received]
    assert paths == [expected(quote(hostile, safe="")) for hostile in HOSTILE_IDS]
    assert not any("/../" in path or "?" in path or "#" in path for path in paths)
    # when: an empty or dot id (an empty id would address the collection, ".." its parent)
    for hostile in ["", ".", ".."]:
        with pytest.raises(PermanentError) as refused:
            call(connector, hostile)
        assert refused.value.kind == "invalid_path"
    # then: none of them was sent
    assert len(every_system_at_remote.received) == len(HOSTILE_IDS)


@pytest.mark.django_db(transaction=True)
def test_a_literal_path_with_a_dot_segment_or_an_unsafe_character_is_refused_unsent(
    every_system_at_remote,
):
    # given
    transport = Transport.for_system("erp")
    for literal in ["customers/../_control", "a/./b", "a b", "x\\y", "\u00e9"]:
        # when
        with pytest.raises(PermanentError) as refused:
            transport.call(operation="probe", method="GET", path=literal)
        # then
        assert refused.value.kind == "invalid_path"
    assert every_system_at_remote.received == []
    assert OutboundCall.objects.count() == 0
