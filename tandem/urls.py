"""Every app's routes, one include each."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path

from core.api import ApiRoot, SchemaDocsView, SchemaView


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico whatever the page links to: send them the icon."""
    return HttpResponseRedirect(static("favicon.svg"))


urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("console.urls")),
    path("", include("masterdata.urls")),
    path("exceptions/", include("exceptions.urls")),
    path("replays/", include("exceptions.replay_urls")),
    path("webhooks/", include("orchestration.events.urls")),
    path("api/v1/", ApiRoot.as_view(), name="api-root"),
    path("api/v1/", include("q2c.api_urls")),
    path("api/v1/", include("masterdata.api_urls")),
    path("api/v1/", include("exceptions.api_urls")),
    path("api/v1/", include("console.api_urls")),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SchemaDocsView.as_view(), name="api-docs"),
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon, name="favicon"),
]
