"""Tandem's URLs plus ``POST /bench/ceiling/``: a bare view doing one INSERT.

It goes through the same middleware, the same gunicorn and the same database connection
handling as the webhook endpoint, so the two differ only in what the view does.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench._common import CEILING_TABLE


@csrf_exempt
@require_POST
def ceiling_insert(request: HttpRequest) -> JsonResponse:
    body = request.read(1024 * 1024).decode("utf-8", errors="replace")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CEILING_TABLE} (body, received_at) VALUES (%s, now()) RETURNING id",  # noqa: S608
            [body],
        )
        (row_id,) = cursor.fetchone()
    return JsonResponse({"status": "accepted", "id": row_id}, status=202)


urlpatterns = [
    path("bench/ceiling/", ceiling_insert, name="bench-ceiling"),
    path("", include("tandem.urls")),
]
