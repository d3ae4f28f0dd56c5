"""/api/v1/ routes of the commercial records."""

from django.urls import path

from q2c import api

urlpatterns = [
    path("quotes/", api.QuoteList.as_view(), name="api-quote-list"),
    path("quotes/<str:enterprise_id>/", api.QuoteDetail.as_view(), name="api-quote-detail"),
    path("orders/", api.OrderList.as_view(), name="api-order-list"),
    path("orders/<str:enterprise_id>/", api.OrderDetail.as_view(), name="api-order-detail"),
    path("contracts/", api.ContractList.as_view(), name="api-contract-list"),
    path(
        "contracts/<str:enterprise_id>/",
        api.ContractDetail.as_view(),
        name="api-contract-detail",
    ),
    path("invoices/", api.InvoiceList.as_view(), name="api-invoice-list"),
    path("invoices/<str:enterprise_id>/", api.InvoiceDetail.as_view(), name="api-invoice-detail"),
    path("credit-notes/", api.CreditNoteList.as_view(), name="api-creditnote-list"),
    path(
        "credit-notes/<str:enterprise_id>/",
        api.CreditNoteDetail.as_view(),
        name="api-creditnote-detail",
    ),
    path("payments/", api.PaymentList.as_view(), name="api-payment-list"),
    path("payments/<str:enterprise_id>/", api.PaymentDetail.as_view(), name="api-payment-detail"),
    path("usage/bulk/", api.UsageBulk.as_view(), name="api-usage-bulk"),
]
