"""The dead-letter view: inbound events that were rejected or died in processing, with
reprocess and discard (a reason, audited; the permission is checked by the service)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.audit import Actor
from core.errors import Refused
from core.pagination import BoundedPaginator
from core.records import SYSTEM_CHOICES
from core.web import PAGE_SIZE, HtmxHttpRequest, page_permission
from orchestration.events.selectors import dead_letters, webhook_throttled_today
from orchestration.events.services import dead_letter_act
from orchestration.models import DEAD_LETTER_STATUSES, DeadLetterAction, InboundEvent

# The body is shown capped: enough to recognise a delivery, never a flood of one.
BODY_SHOWN = 4000


class DeadLetterFilters(forms.Form):
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Rejected or dead"), *[(s.value, s.label) for s in DEAD_LETTER_STATUSES]],
    )
    system = forms.ChoiceField(required=False, choices=[("", "Any system"), *SYSTEM_CHOICES])
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)


@page_permission("dead-letter-list")
def dead_letter_list(request: HtmxHttpRequest) -> HttpResponse:
    form = DeadLetterFilters(request.GET)
    chosen: dict[str, Any] = form.cleaned_data if form.is_valid() else {}
    rows = dead_letters(status=chosen.get("status") or "", system=chosen.get("system") or "")
    page = BoundedPaginator(rows, PAGE_SIZE).get_page(chosen.get("page") or 1)
    context = {
        "page": page,
        "form": form,
        "chosen": chosen,
        "throttled": webhook_throttled_today(),
    }
    status = 200 if form.is_valid() else 400
    return render(request, "console/dead_letter_list.html", context, status=status)


@page_permission("dead-letter-list")
def dead_letter_detail(request: HttpRequest, pk: int) -> HttpResponse:
    event = get_object_or_404(InboundEvent, pk=pk)
    actions = DeadLetterAction.objects.filter(event=event).select_related("actor")
    context = {
        "event": event,
        "body": event.raw_body[:BODY_SHOWN],
        "body_cut": len(event.raw_body) > BODY_SHOWN,
        "actions": actions,
        "is_dead_letter": event.status in DEAD_LETTER_STATUSES,
        "may_act": request.user.has_perm("orchestration.work_dead_letter"),
    }
    return render(request, "console/dead_letter_detail.html", context)


@require_POST
@page_permission("dead-letter-list")
def dead_letter_action(request: HttpRequest, pk: int) -> HttpResponse:
    action = request.POST.get("action") or ""
    try:
        dead_letter_act(
            inbound_event_id=pk, action=action, actor=Actor.person(request.user),
            reason=(request.POST.get("reason") or "")[:2000],
        )  # fmt: skip
    except Refused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"inbound event {pk}: {action} done")
    return redirect("dead-letter-detail", pk=pk)
