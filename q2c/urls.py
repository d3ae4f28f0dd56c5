from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from masterdata import views as masterdata_views
from q2c import api, audit_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
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
    path("dashboard/", views.dashboard, name="dashboard"),
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("accounts/", masterdata_views.account_list, name="account-list"),
    path("", include("masterdata.urls")),
    path("exceptions/", include("exceptions.urls")),
    path("replays/", include("exceptions.replay_urls")),
    path("api/v1/", include("exceptions.api_urls")),
    path("webhooks/", include("orchestration.events.urls")),
    path("audit/", audit_views.history, name="audit-history"),
    path("audit/operators/", audit_views.operator_actions, name="audit-operators"),
    path("audit/as-of/", audit_views.as_of, name="audit-as-of"),
    path("audit/export.csv", audit_views.export_csv, name="audit-export"),
    path("api/v1/", include("q2c.api_urls")),
    path("api/schema/", api.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", api.SchemaDocsView.as_view(), name="api-docs"),
    path("admin/", admin.site.urls),
]
