"""The webhook endpoint: one URL per system, signed deliveries, a fast answer."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orchestration.events.services import inbound_event_receive


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, system: str) -> JsonResponse:
    """Store the delivery raw, answer 202 (accepted), 200 (duplicate) or 4xx with the reason.

    Authentication is the signature alone: no session, no CSRF token.
    """
    # Read one byte past the cap so an oversized body is recognised without buffering it all.
    raw_body = request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1)
    receipt = inbound_event_receive(system=system, raw_body=raw_body, headers=request.headers)
    return JsonResponse(receipt.body, status=receipt.http_status)
