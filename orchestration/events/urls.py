from django.urls import path

from orchestration.events import views
from q2c.records import SYSTEMS

urlpatterns = [
    path(f"{system}/", views.webhook_receive, {"system": system}, name=f"webhook-{system}")
    for system in SYSTEMS
]
