"""A client for a sandbox on loopback, a webhook receiver, and builders of common records."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from sandbox import Sandbox, SandboxConfig, SandboxServer
from sandbox.config import CONTROL_TOKEN_HEADER, default_api_key


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; answers with queued statuses first, then 200."""

    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def record(self, delivery: Delivery) -> int:
        with self.condition:
            self.deliveries.append(delivery)
            self.condition.notify_all()
            return self.statuses.pop(0) if self.statuses else 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """The first ``count`` deliveries; fails if they do not all arrive in time."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while len(self.deliveries) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} webhook deliveries, got {len(self.deliveries)}"
                    )
                self.condition.wait(remaining)
            return list(self.deliveries[:count])


def _receiver_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiver.record(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def receiver_start() -> tuple[WebhookReceiver, ThreadingHTTPServer]:
    hooks = WebhookReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(hooks))
    server.daemon_threads = True
    server.block_on_close = False
    hooks.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return hooks, server


class SandboxClient:
    """Talks to a running sandbox over HTTP, like any client would."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url
        self.control_token = server.sandbox.config.control_token
        self.http = requests.Session()
        self.http.trust_env = False

    def call(
        self,
        method: str,
        system: str,
        path: str,
        *,
        json: Any = None,
        key: str | None = None,
        token: str | None = None,
        timeout: float | tuple[float, float] = 10.0,
        params: Any = None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or default_api_key(system)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(
            method,
            f"{self.url}/{system}{path}",
            json=json,
            headers=headers,
            timeout=timeout,
            params=params,
        )

    def get(self, system: str, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", system, path, **kwargs)

    def post(self, system: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", system, path, json=body, **kwargs)

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(
            method,
            f"{self.url}/_control{path}",
            json=body,
            headers={CONTROL_TOKEN_HEADER: self.control_token},
            timeout=10,
        )

    def state(self, system: str) -> dict[str, Any]:
        return self.control("GET", f"/state/{system}").json()


def sandbox_start(config: SandboxConfig) -> SandboxServer:
    server = SandboxServer(Sandbox(config), host="127.0.0.1", port=0)
    server.start()
    return server


# --- builders for the records most tests need ---------------------------------------------


def crm_account(sandbox: SandboxClient, **fields: Any) -> str:
    body = {
        "Name": "Northwind Traders Ltd",
        "Website": "https://www.northwind.example",
        "BillingCountryCode": "GB",
        "BillingCity": "London",
        "BillingPostalCode": "EC1A 1AA",
        "BillingStreet": "1 High Street",
        "CurrencyIsoCode": "GBP",
        "Tax_Id__c": "GB123456789",
        **fields,
    }
    response = sandbox.post("crm", "/accounts", body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


QUOTE_LINES = [
    {
        "ProductCode": "PLAT-PRO",
        "SBQQ__ProductName__c": "Platform Pro seats",
        "SBQQ__ChargeType__c": "Recurring",
        "SBQQ__BillingFrequency__c": "Monthly",
        "SBQQ__Quantity__c": "25",
        "SBQQ__ListPrice__c": "40.00",
        "SBQQ__Discount__c": "10",
    },
    {
        "ProductCode": "ONBOARD",
        "SBQQ__ProductName__c": "Onboarding",
        "SBQQ__ChargeType__c": "One-Time",
        "SBQQ__Quantity__c": "1",
        "SBQQ__NetPrice__c": "1500.00",
    },
]


def cpq_quote(sandbox: SandboxClient, account_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "SBQQ__Account__c": account_id,
        "CurrencyIsoCode": "GBP",
        "SBQQ__StartDate__c": "2026-01-01",
        "SBQQ__SubscriptionTerm__c": 12,
        "SBQQ__ExpirationDate__c": "2026-02-04",
        "Legal_Entity__c": "UK01",
        "lines": QUOTE_LINES,
        **fields,
    }
    response = sandbox.post("cpq", "/quotes", body)
    assert response.status_code == 201, response.text
    return response.json()


def billing_customer(sandbox: SandboxClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Northwind", "email": "ap@northwind.example", **fields}
    response = sandbox.post("billing", "/customers", body)
    assert response.status_code == 200, response.text
    return response.json()


def billing_price(sandbox: SandboxClient, **fields: Any) -> dict[str, Any]:
    body = {
        "currency": "gbp",
        "unit_amount": 3600,
        "recurring": {"interval": "month"},
        "product_data": {"name": "Platform Pro seats"},
        **fields,
    }
    response = sandbox.post("billing", "/prices", body)
    assert response.status_code == 200, response.text
    return response.json()


def erp_customer(sandbox: SandboxClient, external_id: str = "ACC-000001") -> dict[str, Any]:
    response = sandbox.post(
        "erp",
        "/customers",
        {
            "externalId": external_id,
            "companyName": "Northwind Traders Ltd",
            "subsidiary": {"id": "2"},
            "currency": {"refName": "GBP"},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def erp_order(sandbox: SandboxClient, external_id: str = "ORD-000001", **fields: Any):
    body = {
        "externalId": external_id,
        "entity": {"externalId": "ACC-000001"},
        "tranDate": "2026-01-05",
        "item": {
            "items": [
                {"item": {"externalId": "ONBOARD"}, "quantity": "1", "rate": "1500.00"},
                {"item": {"externalId": "TRAINING"}, "quantity": "2.5", "rate": "200.00"},
            ]
        },
        **fields,
    }
    return sandbox.post("erp", "/salesorders", body)
