from django.urls import path

from core.records import SYSTEMS
from orchestration.events import views

urlpatterns = [
    path(f"{system}/", views.webhook_receive, {"system": system}, name=f"webhook-{system}")
    for system in SYSTEMS
]
