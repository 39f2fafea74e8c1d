from django.urls import path

from . import apis, views

app_name = "notices"

urlpatterns = [
    path("t/<str:token>", views.track, name="track"),
    path("notices/", views.index, name="index"),
    path("notices/patients", views.patients, name="patients"),
    path("notices/patients/<int:pk>", views.patient, name="patient"),
    path("notices/settings", views.settings_page, name="settings"),
    path("notices/templates/<str:milestone>/<str:channel>", views.template_edit, name="template"),
    path("notices/templates/<str:milestone>/<str:channel>/preview", views.template_preview, name="template-preview"),
    path("notices/orders/<int:pk>", views.order, name="order"),
    path("notices/orders/<int:pk>/patients/<int:patient_pk>/revoke", views.link_revoke, name="link-revoke"),
    path("notices/orders/<int:pk>/patients/<int:patient_pk>/new-link", views.link_new, name="link-new"),
    path("api/notices/twilio/status", apis.twilio_status, name="twilio-status"),
    path("api/notices/twilio/inbound", apis.twilio_inbound, name="twilio-inbound"),
]
