from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render

from masterdata.models import Account
from q2c.pagination import BoundedPaginator
from q2c.views import PAGE_SIZE, HtmxHttpRequest, page_permission


@page_permission("account-list")
def account_list(request: HtmxHttpRequest) -> HttpResponse:
    query = (request.GET.get("q") or "").strip()
    qs = Account.objects.select_related("legal_entity", "merged_into").order_by("enterprise_id")
    if query:
        qs = qs.filter(legal_name__icontains=query) | qs.filter(enterprise_id__icontains=query)
    page = BoundedPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "q": query}
    if request.htmx:
        return render(request, "masterdata/account_list.html#rows", context)
    return render(request, "masterdata/account_list.html", context)
