from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path
from health_check.views import HealthCheckView

from fizy.lib.health import QueueAge

from fulfillment.stripe_webhooks import stripe_events

admin.site.site_header = "Fizy pharmacy operations"
admin.site.site_title = "Fizy ops"
admin.site.index_title = "Partners, catalog, routing and orders"

def favicon(request):
    return HttpResponse(status=204)  # no icon; answer so browsers do not log a 404 on every page


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("health/", HealthCheckView.as_view(checks=["health_check.checks.Database", "health_check.checks.Cache", QueueAge]),
         name="health"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(
        redirect_authenticated_user=True, extra_context={"idle_minutes": settings.SESSION_IDLE_TIMEOUT // 60}), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("accounts.urls")),
    path("", include("clinics.urls")),
    path("", include("carts.urls")),
    path("", include("prescriptions.urls")),
    path("", include("fulfillment.urls")),
    path("", include("notices.urls")),
    path("", include("clinic_api.urls")),
    path("api/stripe/events", stripe_events, name="stripe-events"),
]
