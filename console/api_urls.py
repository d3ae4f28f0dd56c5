"""/api/v1/ routes of the audit trail."""

from django.urls import path

from console import api

urlpatterns = [
    path("audit/history/", api.HistoryList.as_view(), name="api-audit-history"),
    path("audit/as-of/", api.RecordAsOf.as_view(), name="api-audit-as-of"),
]
