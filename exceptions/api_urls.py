"""/api/v1/ routes of the exception queue and replays."""

from django.urls import path

from exceptions import api

urlpatterns = [
    path("exceptions/", api.ExceptionListApi.as_view(), name="api-exception-list"),
    path("exceptions/<int:pk>/", api.ExceptionDetailApi.as_view(), name="api-exception-detail"),
    path("exceptions/<int:pk>/retry/", api.ExceptionRetryApi.as_view(), name="api-exception-retry"),
    path(
        "exceptions/<int:pk>/assign/", api.ExceptionAssignApi.as_view(), name="api-exception-assign"
    ),
    path(
        "exceptions/<int:pk>/resolve/",
        api.ExceptionResolveApi.as_view(),
        name="api-exception-resolve",
    ),
    path(
        "exceptions/<int:pk>/ignore/", api.ExceptionIgnoreApi.as_view(), name="api-exception-ignore"
    ),
    path(
        "exceptions/<int:pk>/comments/",
        api.ExceptionCommentApi.as_view(),
        name="api-exception-comment",
    ),
    path("replays/", api.ReplayListApi.as_view(), name="api-replay-list"),
    path("replays/request/", api.ReplayRequestApi.as_view(), name="api-replay-request"),
    path("replays/<int:pk>/", api.ReplayDetailApi.as_view(), name="api-replay-detail"),
    path("replays/<int:pk>/approve/", api.ReplayApproveApi.as_view(), name="api-replay-approve"),
    path("replays/<int:pk>/reject/", api.ReplayRejectApi.as_view(), name="api-replay-reject"),
]
