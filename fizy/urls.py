from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from fulfillment.stripe_webhooks import stripe_events

admin.site.site_header = "Fizy pharmacy operations"
admin.site.site_title = "Fizy ops"
admin.site.index_title = "Partners, catalog, routing and orders"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("clinics.urls")),
    path("", include("carts.urls")),
    path("", include("fulfillment.urls")),
    path("api/stripe/events", stripe_events, name="stripe-events"),
]
