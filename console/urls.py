"""The console's cross-app screens: home, dashboard, the record lists, deal timelines and
the audit browser."""

from django.urls import path

from console.views import audit as audit_views
from console.views import contracts as contract_views
from console.views import dead_letters as dead_letter_views
from console.views import reconciliation as reconciliation_views
from console.views import records as views

urlpatterns = [
    path("", views.home, name="home"),
    path("my-work/badge/", views.waiting_badge, name="waiting-badge"),
    path("my-work/notifications/", views.notification_preference, name="notification-preference"),
    path("my-work/time-zone/", views.time_zone_preference, name="time-zone-preference"),
    path("my-work/views/", views.saved_view_save, name="saved-view-save"),
    path("my-work/views/<int:pk>/delete/", views.saved_view_delete, name="saved-view-delete"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("orders/", views.order_list, name="order-list"),
    path("orders/<str:enterprise_id>/", views.order_detail, name="order-detail"),
    path("orders/<str:enterprise_id>/hold/", views.order_hold_toggle, name="order-hold"),
    path("orders/<str:enterprise_id>/timeline/", views.order_timeline, name="order-timeline"),
    path(
        "orders/<str:enterprise_id>/steps/<int:step_pk>/retry/",
        views.order_step_retry,
        name="order-step-retry",
    ),
    path(
        "outbound-calls/<int:pk>/payload/",
        views.outbound_call_payload,
        name="outbound-call-payload",
    ),
    path("contracts/", views.contract_list, name="contract-list"),
    path("contracts/<str:enterprise_id>/", contract_views.contract_detail, name="contract-detail"),
    path(
        "contracts/<str:enterprise_id>/change/",
        contract_views.contract_action,
        name="contract-action",
    ),
    path(
        "contracts/<str:enterprise_id>/requests/<int:pk>/decide/",
        contract_views.contract_request_decide,
        name="contract-request-decide",
    ),
    path(
        "contracts/<str:enterprise_id>/timeline/",
        views.contract_timeline,
        name="contract-timeline",
    ),
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/<str:enterprise_id>/", views.invoice_detail, name="invoice-detail"),
    path("reconciliation/", reconciliation_views.drift_page, name="reconciliation"),
    path("reconciliation/run/", reconciliation_views.run_start, name="reconciliation-run"),
    path("reconciliation/books/", reconciliation_views.books_page, name="reconciliation-books"),
    path(
        "reconciliation/drift.csv", reconciliation_views.drift_export, name="reconciliation-export"
    ),
    path("reconciliation/drift/<int:pk>/", reconciliation_views.drift_detail, name="drift-detail"),
    path(
        "reconciliation/drift/<int:pk>/resolve/",
        reconciliation_views.drift_resolve,
        name="drift-resolve",
    ),
    path(
        "reconciliation/drift/resolve/",
        reconciliation_views.drift_bulk_resolve,
        name="drift-bulk-resolve",
    ),
    path("dead-letters/", dead_letter_views.dead_letter_list, name="dead-letter-list"),
    path("dead-letters/<int:pk>/", dead_letter_views.dead_letter_detail, name="dead-letter-detail"),
    path(
        "dead-letters/<int:pk>/action/",
        dead_letter_views.dead_letter_action,
        name="dead-letter-action",
    ),
    path("audit/", audit_views.history, name="audit-history"),
    path("audit/operators/", audit_views.operator_actions, name="audit-operators"),
    path("audit/as-of/", audit_views.as_of, name="audit-as-of"),
    path("audit/export.csv", audit_views.export_csv, name="audit-export"),
]
