"""The webhook endpoint: one URL per system, signed deliveries, a fast answer."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.ratelimit import client_address, rate_limit_hit
from orchestration.events.services import inbound_event_receive, webhook_throttled_count


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, system: str) -> JsonResponse:
    """Store the delivery raw, answer 202 (accepted), 200 (duplicate) or 4xx with the reason.

    Authentication is the signature alone: no session, no CSRF token. A client (an address)
    past ``WEBHOOK_RATE_LIMIT`` for this system is answered 429 with ``Retry-After`` before
    its body is read: nothing is stored, the refusal is only counted.
    """
    client = client_address(request)
    rate = settings.WEBHOOK_RATE_LIMIT
    retry_after = rate_limit_hit(scope=f"webhook:{system}", client=client, rate=rate)
    if retry_after is not None:
        webhook_throttled_count(system=system)
        reason = f"more than {rate} deliveries from this address; retry in {retry_after} s"
        return JsonResponse(
            {"status": "throttled", "reason": reason},
            status=429,
            headers={"Retry-After": str(retry_after)},
        )
    # Read one byte past the cap so an oversized body is recognised without buffering it all.
    raw_body = request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1)
    receipt = inbound_event_receive(
        system=system, raw_body=raw_body, headers=request.headers, client=client
    )
    return JsonResponse(receipt.body, status=receipt.http_status)
