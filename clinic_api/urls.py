from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from . import apis, views

app_name = "clinic_api"
REDOC_CSP = {"style-src": ["'unsafe-inline'", "https://fonts.googleapis.com"], "font-src": ["https://fonts.gstatic.com"],
             "worker-src": ["blob:"], "img-src": ["https:"]}

urlpatterns = [
    # The clinic admins' Settings page: API keys and webhooks.
    path("clinic/api", views.settings_page, name="settings"),
    path("clinic/api/keys", views.key_create, name="key-create"),
    path("clinic/api/keys/<int:pk>/revoke", views.key_revoke, name="key-revoke"),
    path("clinic/api/webhooks", views.webhook_create, name="webhook-create"),
    path("clinic/api/webhooks/<int:pk>/remove", views.webhook_remove, name="webhook-remove"),
    path("clinic/api/deliveries/<int:pk>/resend", views.delivery_resend, name="delivery-resend"),
    # The API.
    path("api/v1/patients", apis.PatientsApi.as_view(), name="patients"),
    path("api/v1/patients/<int:pk>", apis.PatientApi.as_view(), name="patient"),
    path("api/v1/prescriptions", apis.PrescriptionsApi.as_view(), name="prescriptions"),
    path("api/v1/prescriptions/<int:pk>", apis.PrescriptionApi.as_view(), name="prescription"),
    path("api/v1/cart", apis.CartApi.as_view(), name="cart"),
    path("api/v1/cart/validate", apis.CartValidateApi.as_view(), name="cart-validate"),
    path("api/v1/cart/ready", apis.CartReadyApi.as_view(), name="cart-ready"),
    path("api/v1/cart/lines", apis.CartLinesApi.as_view(), name="cart-lines"),
    path("api/v1/cart/lines/<int:pk>", apis.CartLineApi.as_view(), name="cart-line"),
    path("api/v1/orders", apis.OrdersApi.as_view(), name="orders"),
    path("api/v1/orders/<int:pk>", apis.OrderApi.as_view(), name="order"),
    path("api/v1/webhooks", apis.WebhooksApi.as_view(), name="webhooks"),
    path("api/v1/webhooks/<int:pk>", apis.WebhookApi.as_view(), name="webhook"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Redoc styles itself with inline <style> elements, Google's fonts and a search worker: the
    # Content-Security-Policy allows those on this page only (it shows no data of anyone's).
    path("api/v1/docs/", csp_update(REDOC_CSP)(SpectacularRedocView.as_view(url_name="clinic_api:schema")), name="docs"),
]
