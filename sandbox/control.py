"""``/_control/``: the operator's and the tests' handle on a running sandbox.

Every call but the health check carries the control token (``X-Sandbox-Control-Token``,
``SandboxConfig.control_token``; ``SANDBOX_CONTROL_TOKEN`` for ``manage.py sandbox``);
without it the answer is a 401.

GET  /_control/health                       liveness
GET  /_control/faults                       fault settings of every system
GET  /_control/faults/<system>              one system's fault settings
POST /_control/faults/<system>              change some of them (JSON object of settings)
DELETE /_control/faults/<system>            back to no faults
GET  /_control/state                        record counts per system and collection
GET  /_control/state/<system>               every record of one system, per collection
POST /_control/reset                        empty state and outbox, no faults, re-seeded
POST /_control/erp/approve/<internalId>     approve a pending ERP sales order now
POST /_control/erp/reject/<internalId>      reject it ({"reason": ...}); emits order.rejected
POST /_control/erp/salesorders/<internalId>/lines/<line>  edit a line (quantity, rate) as
                                            someone in the ERP would, no event sent
POST /_control/billing/invoices/<id>/void       void an open invoice with no event sent
POST /_control/billing/invoices/<id>/duplicate  a copy of a posted invoice under a new id and
                                            number, as a double posting in billing, no event
GET  /_control/webhooks                     the outbox (?system=&event_type=&status=)
POST /_control/webhooks/<event_id>/redeliver  send an event again
GET  /_control/settings                     run-time settings
POST /_control/settings                     change webhook_url / erp_approval_delay_s
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.config import ConfigError, FaultSettings, webhook_url_check

if TYPE_CHECKING:
    from sandbox.app import Outcome, Sandbox


def _error(status: int, message: str) -> Outcome:
    from sandbox.app import json_outcome

    return json_outcome(status, {"error": message})


def _ok(body: Any, status: int = 200) -> Outcome:
    from sandbox.app import json_outcome

    return json_outcome(status, body)


def _body(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    return json.loads(raw, parse_float=Decimal)


def control_handle(
    sandbox: Sandbox, method: str, path: str, query: dict[str, list[str]], raw: bytes
) -> Outcome:
    try:
        body = _body(raw)
    except ValueError as exc:
        return _error(400, f"invalid JSON: {exc}")
    parts = [part for part in path.split("/") if part][1:]
    try:
        return _dispatch(sandbox, method, parts, query, body)
    except ConfigError as exc:
        return _error(400, str(exc))


def _dispatch(
    sandbox: Sandbox, method: str, parts: list[str], query: dict[str, list[str]], body: Any
) -> Outcome:
    match (method, parts):
        case ("GET", ["health"]):
            return _ok({"status": "ok", "systems": list(sandbox.systems)})
        case ("GET", ["faults"]):
            with sandbox.lock:
                return _ok({name: f.to_json() for name, f in sandbox.faults.items()})
        case (_, ["faults", system]):
            return _faults(sandbox, method, system, body)
        case ("GET", ["state"]):
            with sandbox.lock:
                counts = {
                    name: {c: len(r) for c, r in sandbox.state.public_collections(name).items()}
                    for name in sandbox.systems
                }
                counts["webhooks"] = {"events": len(sandbox.state.webhooks)}
            return _ok(counts)
        case ("GET", ["state", system]):
            if system not in sandbox.systems:
                return _error(404, f"unknown system {system!r}")
            with sandbox.lock:
                collections = sandbox.state.public_collections(system)
                return _ok(
                    {
                        "system": system,
                        "counts": {name: len(records) for name, records in collections.items()},
                        "records": {
                            name: list(records.values()) for name, records in collections.items()
                        },
                    }
                )
        case ("POST", ["reset"]):
            sandbox.reset()
            return _ok({"reset": True})
        case ("POST", ["erp", "approve", internal_id]):
            try:
                order = sandbox.erp_approve(internal_id)
            except LookupError as exc:
                return _error(404, str(exc))
            except ValueError as exc:
                return _error(409, str(exc))
            return _ok(order)
        case ("POST", ["erp", "reject", internal_id]):
            reason = body.get("reason") if isinstance(body, dict) else None
            try:
                order = sandbox.erp_reject(internal_id, str(reason or "rejected by finance"))
            except LookupError as exc:
                return _error(404, str(exc))
            except ValueError as exc:
                return _error(409, str(exc))
            return _ok(order)
        case ("POST", ["erp", "salesorders", internal_id, "lines", line_no]):
            return _erp_line_edit(sandbox, internal_id, line_no, body)
        case ("POST", ["billing", "invoices", invoice_id, "duplicate"]):
            return _billing_invoice_duplicate(sandbox, invoice_id)
        case ("POST", ["billing", "invoices", invoice_id, "void"]):
            return _billing_invoice_void_silently(sandbox, invoice_id)
        case ("GET", ["webhooks"]):
            return _ok(_webhooks(sandbox, query))
        case ("POST", ["webhooks", event_id, "redeliver"]):
            with sandbox.lock:
                known = event_id in sandbox.state.webhooks
            if not known:
                return _error(404, f"no event {event_id}")
            sandbox.webhooks_redeliver([event_id])
            return _ok({"redelivering": event_id}, status=202)
        case ("GET", ["settings"]):
            with sandbox.lock:
                return _ok(dict(sandbox.settings))
        case ("POST", ["settings"]):
            return _settings_update(sandbox, body)
    return _error(404 if method == "GET" else 405, f"no control endpoint {method} {parts}")


def _erp_line_edit(sandbox: Sandbox, internal_id: str, line_no: str, body: Any) -> Outcome:
    from sandbox.systems.erp import order_line_edit

    if not line_no.isdigit() or not isinstance(body, dict):
        return _error(400, "the line is a number and the body a JSON object")
    with sandbox.lock:
        order = sandbox.state.systems["erp"]["salesorders"].get(internal_id)
        if order is None:
            return _error(404, f"no ERP sales order {internal_id}")
        try:
            order_line_edit(order, int(line_no), body, dt.datetime.now(dt.UTC))
        except LookupError as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        sandbox.mark_dirty()
        return _ok(order)


def _billing_invoice_duplicate(sandbox: Sandbox, invoice_id: str) -> Outcome:
    from sandbox.ids import stripe_id

    if "billing" not in sandbox.systems:
        return _error(404, "no billing system in this sandbox")
    with sandbox.lock:
        invoices = sandbox.state.systems["billing"]["invoices"]
        original = invoices.get(invoice_id)
        if original is None:
            return _error(404, f"no billing invoice {invoice_id}")
        if original["status"] == "draft":
            return _error(409, f"invoice {invoice_id} is a draft: only a posted one is duplicated")
        duplicate = copy.deepcopy(original)
        number = sandbox.state.next_number("billing.in")
        duplicate["id"] = stripe_id("in", number, seed=str(sandbox.config.seed), width=24)
        customer = sandbox.state.systems["billing"]["customers"].get(original["customer"], {})
        prefix = customer.get("invoice_prefix") or "DUP"
        sequence = sandbox.state.next_number(f"billing.invoice_number.{original['customer']}")
        duplicate["number"] = f"{prefix}-{sequence:04d}"
        now = int(dt.datetime.now(dt.UTC).timestamp())
        duplicate["created"] = duplicate["updated"] = now
        for line in duplicate["lines"]["data"]:
            if line.get("invoice") == invoice_id:
                line["invoice"] = duplicate["id"]
        invoices[duplicate["id"]] = duplicate
        sandbox.mark_dirty()
        return _ok(duplicate, status=201)


def _billing_invoice_void_silently(sandbox: Sandbox, invoice_id: str) -> Outcome:
    """Void an open invoice as someone working in billing's own screens might, with no
    event sent (the public ``/billing/invoices/<id>/void`` announces ``invoice.voided``)."""
    if "billing" not in sandbox.systems:
        return _error(404, "no billing system in this sandbox")
    with sandbox.lock:
        invoice = sandbox.state.systems["billing"]["invoices"].get(invoice_id)
        if invoice is None:
            return _error(404, f"no billing invoice {invoice_id}")
        if invoice["status"] != "open":
            return _error(409, f"invoice {invoice_id} is {invoice['status']}: only an open one")
        now = int(dt.datetime.now(dt.UTC).timestamp())
        invoice["status"] = "void"
        invoice["amount_remaining"] = 0
        invoice["status_transitions"]["voided_at"] = now
        invoice["updated"] = now
        sandbox.mark_dirty()
        return _ok(invoice)


def _faults(sandbox: Sandbox, method: str, system: str, body: Any) -> Outcome:
    if system not in sandbox.faults:
        return _error(404, f"unknown system {system!r}")
    with sandbox.lock:
        if method == "POST":
            sandbox.faults[system] = sandbox.faults[system].updated(body)
        elif method == "DELETE":
            sandbox.faults[system] = FaultSettings()
        elif method != "GET":
            return _error(405, f"{method} is not allowed on faults")
        return _ok(sandbox.faults[system].to_json())


def _webhooks(sandbox: Sandbox, query: dict[str, list[str]]) -> dict[str, Any]:
    filters = {name: query[name][0] for name in ("system", "event_type", "status") if name in query}
    with sandbox.lock:
        events = [
            {
                **{key: value for key, value in event.items() if key != "body"},
                "payload": json.loads(event["body"]),
            }
            for event in sandbox.state.webhooks.values()
            if all(event.get(name) == value for name, value in filters.items())
        ]
    return {"count": len(events), "events": events}


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _settings_update(sandbox: Sandbox, body: Any) -> Outcome:
    if not isinstance(body, dict):
        return _error(400, "settings must be a JSON object")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "webhook_url":
            if value is not None and not isinstance(value, str):
                return _error(400, "webhook_url must be a string or null")
            changes[name] = webhook_url_check(value)
        elif name == "erp_approval_delay_s":
            if value is None:
                changes[name] = None
            elif isinstance(value, bool) or not _NUMBER.match(str(value)):
                return _error(400, "erp_approval_delay_s must be a number >= 0 or null")
            else:
                changes[name] = float(value)
        else:
            return _error(400, f"unknown setting {name!r}")
    with sandbox.lock:
        sandbox.settings.update(changes)
        held = [
            event_id
            for event_id, event in sandbox.state.webhooks.items()
            if event["status"] == "held"
        ]
        settings = dict(sandbox.settings)
    if held and settings["webhook_url"]:
        sandbox.webhooks_redeliver(held)
    return _ok(settings)
