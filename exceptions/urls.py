from django.urls import path

from exceptions import views

urlpatterns = [
    path("", views.exception_list, name="exception-list"),
    path("<int:pk>/", views.exception_detail, name="exception-detail"),
    path("<int:pk>/retry/", views.exception_retry, name="exception-retry"),
    path("<int:pk>/resolve/", views.exception_resolve, name="exception-resolve"),
    path("<int:pk>/ignore/", views.exception_ignore, name="exception-ignore"),
    path("<int:pk>/assign/", views.exception_assign, name="exception-assign"),
    path("<int:pk>/comment/", views.exception_comment, name="exception-comment"),
    path("naming/", views.exceptions_naming, name="exceptions-naming"),
    path("bulk/", views.exception_bulk, name="exception-bulk"),
    path("bulk/outcome/", views.exception_bulk_outcome, name="exception-bulk-outcome"),
]
