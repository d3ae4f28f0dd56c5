from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from masterdata import views as masterdata_views
from q2c import views

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
    path("contracts/", views.contract_list, name="contract-list"),
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("accounts/", masterdata_views.account_list, name="account-list"),
    path("", include("masterdata.urls")),
    path("exceptions/", include("exceptions.urls")),
    path("webhooks/", include("orchestration.events.urls")),
    path("admin/", admin.site.urls),
]
