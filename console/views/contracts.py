"""The contract page: its versions side by side with what changed and why, and the
operator's actions (renew, cancel now with credit or at term end, change a quantity), each
with a reason and a dry run of what every system will receive. A change that gives money
back waits for a second person's approval (finance operations, never the requester)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.audit import Actor
from core.errors import Refused
from core.web import page_permission
from orchestration.workflows import lifecycle as changes
from q2c import lifecycle
from q2c.models import ChangeRequestState, Contract, ContractChangeRequest

# Which permission each action needs (checked on the server for every request).
ACTION_PERMISSION = {
    changes.RENEW: "q2c.amend_contract",
    changes.CHANGE_QUANTITY: "q2c.amend_contract",
    changes.CANCEL_NOW: "q2c.cancel_contract",
    changes.CANCEL_AT_TERM_END: "q2c.cancel_contract",
}


def _versions_table(contract: Contract) -> dict[str, Any]:
    """Versions as columns, products as rows: quantity x net price per version."""
    versions = list(
        contract.versions.select_related("order", "base_version")
        .prefetch_related("lines")
        .order_by("number")
    )
    codes: list[str] = []
    cells: dict[tuple[str, int], str] = {}
    for version in versions:
        for line in version.lines.all():
            if line.product_code not in codes:
                codes.append(line.product_code)
            cells[(line.product_code, version.number)] = (
                f"{line.quantity.normalize():f} x {lifecycle.net_price(line)}"
            )
    rows = [(code, [cells.get((code, v.number), "—") for v in versions]) for code in codes]
    return {"versions": versions, "rows": rows}


def _payload(request: HttpRequest) -> dict[str, Any]:
    return {
        name: request.POST.get(name, "").strip()
        for name in ("effective_date", "product_code", "quantity")
        if request.POST.get(name, "").strip()
    }


@page_permission("contract-list")
def contract_detail(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    contract = get_object_or_404(
        Contract.objects.select_related("account", "legal_entity"), enterprise_id=enterprise_id
    )
    user = request.user
    context = {
        "contract": contract,
        **_versions_table(contract),
        "actions": [
            (code, label)
            for code, label in changes.ACTIONS.items()
            if user.has_perm(ACTION_PERMISSION[code])
        ],
        "requests": contract.change_requests.select_related("requested_by", "decided_by")[:20],
        "can_approve": user.has_perm("q2c.approve_contract_change"),
        "credit_notes": contract.credit_notes.order_by("-created_at")[:20],
    }
    return render(request, "console/contract_detail.html", context)


@require_POST
@page_permission("contract-list")
def contract_action(request: HttpRequest, enterprise_id: str) -> HttpResponse:
    """First the dry run (``step=preview``), then the change (``step=confirm``) or, when it
    credits the customer, a request for a second person's approval."""
    contract = get_object_or_404(Contract, enterprise_id=enterprise_id)
    action = request.POST.get("action", "")
    if action not in ACTION_PERMISSION:
        messages.error(request, f"unknown contract action {action!r}")
        return redirect("contract-detail", enterprise_id=enterprise_id)
    if not request.user.has_perm(ACTION_PERMISSION[action]):
        raise PermissionDenied(f"you may not {changes.ACTIONS[action].lower()}")
    reason = request.POST.get("reason", "").strip()
    payload = _payload(request)
    actor = Actor.person(request.user)
    try:
        if not reason:
            raise Refused("a reason is required", kind=Refused.Kind.REASON_REQUIRED)
        preview = changes.contract_change_preview(contract=contract, action=action, payload=payload)
        if request.POST.get("step") != "confirm":
            return render(
                request,
                "console/contract_change_preview.html",
                {
                    "contract": contract,
                    "action": action,
                    "payload": payload,
                    "reason": reason,
                    "preview": preview,
                    "needs_approval": changes.preview_needs_approval(preview),
                },
            )
        if changes.preview_needs_approval(preview):
            change = lifecycle.change_request_create(
                contract=contract, action=action, payload=payload, preview=preview,
                actor=actor, reason=reason,
            )  # fmt: skip
            messages.success(
                request, f"{change} waits for a second person's approval (finance operations)"
            )
        else:
            version = changes.contract_change_submit(
                contract=contract, action=action, payload=payload,
                change_key=f"operator:{uuid.uuid4().hex[:16]}", actor=actor, reason=reason,
            )  # fmt: skip
            messages.success(request, f"{contract.enterprise_id} v{version.number} {version.state}")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("contract-detail", enterprise_id=enterprise_id)


@require_POST
@page_permission("contract-list")
def contract_request_decide(request: HttpRequest, enterprise_id: str, pk: int) -> HttpResponse:
    """Approve (then the change is made) or reject a change that credits the customer."""
    change = get_object_or_404(
        ContractChangeRequest.objects.select_related("contract"),
        pk=pk,
        contract__enterprise_id=enterprise_id,
    )
    if not request.user.has_perm("q2c.approve_contract_change"):
        raise PermissionDenied("only finance operations approve or reject a credit")
    approve = request.POST.get("decision") == "approve"
    actor = Actor.person(request.user)
    reason = request.POST.get("reason", "").strip()
    try:
        decided = lifecycle.change_request_decide(
            request=change, approve=approve, actor=actor, reason=reason
        )
        if decided.state == ChangeRequestState.APPROVED:
            version = changes.contract_change_submit(
                contract=change.contract, action=change.action, payload=change.payload,
                change_key=f"request:{change.pk}", actor=actor,
                reason=f"{change.reason} (approved by {actor.name}: {reason})",
            )  # fmt: skip
            lifecycle.change_request_link_version(
                request=decided, version=version, actor=actor, reason=reason
            )
            messages.success(request, f"{change} approved: v{version.number} {version.state}")
        else:
            messages.success(request, f"{change} rejected")
    except Refused as exc:
        messages.error(request, exc.message)
    return redirect("contract-detail", enterprise_id=enterprise_id)
