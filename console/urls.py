"""The console's cross-app screens: home, dashboard, the record lists, deal timelines and
the audit browser."""

from django.urls import path

from console.views import audit as audit_views
from console.views import records as views

urlpatterns = [
    path("", views.home, name="home"),
    path("my-work/badge/", views.waiting_badge, name="waiting-badge"),
    path("my-work/notifications/", views.notification_preference, name="notification-preference"),
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
    path(
        "contracts/<str:enterprise_id>/timeline/",
        views.contract_timeline,
        name="contract-timeline",
    ),
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("audit/", audit_views.history, name="audit-history"),
    path("audit/operators/", audit_views.operator_actions, name="audit-operators"),
    path("audit/as-of/", audit_views.as_of, name="audit-as-of"),
    path("audit/export.csv", audit_views.export_csv, name="audit-export"),
]
