"""A sandbox of every system Tandem connects to, served over real HTTP.

One server, one path prefix per system: ``/crm/`` (Salesforce-like accounts), ``/cpq/``
(Salesforce CPQ quotes), ``/billing/`` (Stripe-Billing-like), ``/erp/`` (NetSuite-like),
``/tax/`` (Avalara-like), ``/payments/`` (Stripe-like payment intents), and ``/_control/``
for fault injection, state dumps and resets. It keeps its own state (in memory, optionally
in a JSON file), honours ``Idempotency-Key``, authenticates a bearer key per system and
sends signed webhooks to Tandem. Run it with ``manage.py sandbox``.
"""

from sandbox.app import Sandbox
from sandbox.config import SYSTEMS, FaultSettings, SandboxConfig
from sandbox.server import SandboxServer
from sandbox.webhooks import SIGNATURE_HEADER, webhook_signature

__all__ = [
    "SIGNATURE_HEADER",
    "SYSTEMS",
    "FaultSettings",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "webhook_signature",
]
