"""/api/v1/ routes of master data."""

from django.urls import path

from masterdata import api

urlpatterns = [
    path("accounts/", api.AccountList.as_view(), name="api-account-list"),
    path("accounts/<str:enterprise_id>/", api.AccountDetail.as_view(), name="api-account-detail"),
    path("products/", api.ProductList.as_view(), name="api-product-list"),
    path("products/<str:enterprise_id>/", api.ProductDetail.as_view(), name="api-product-detail"),
]
