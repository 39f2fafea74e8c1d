from django.urls import path

from . import apis, views

app_name = "fulfillment"

urlpatterns = [
    path("orders/", views.orders, name="orders"),
    path("orders/attention", views.attention, name="attention"),
    path("orders/attention/<int:pk>/dismiss", views.attention_dismiss, name="attention-dismiss"),
    path("orders/<int:pk>", views.order, name="order"),
    path("orders/<int:pk>/lines/<int:line_pk>", views.line, name="line"),
    path("orders/<int:pk>/receipt", views.receipt, name="receipt"),
    path("orders/<int:pk>/fhir", views.order_fhir, name="order-fhir"),
    path("orders/<int:pk>/lines/<int:line_pk>/charge", views.charge_again, name="charge-again"),
    path("orders/<int:pk>/lines/<int:line_pk>/cancel", views.line_cancel, name="line-cancel"),
    path("orders/<int:pk>/lines/<int:line_pk>/reroute", views.line_reroute_view, name="line-reroute"),
    path("orders/<int:pk>/lines/<int:line_pk>/answer", views.line_answer, name="line-answer"),
    path("clinic/billing/payments", views.payments, name="payments"),
    path("api/partners/<slug:slug>/events", apis.PartnerEventsApi.as_view(), name="partner-events"),
    path("api/partners/prescriptions/<str:token>", views.partner_prescription_document,
         name="partner-prescription-document"),
    path("sandbox/partners/<slug:slug>/orders", apis.SandboxPartnerOrdersApi.as_view(), name="sandbox-orders"),
    path("sandbox/partners/<slug:slug>/orders/<str:reference>", apis.SandboxPartnerOrderStatusApi.as_view(),
         name="sandbox-order-status"),
    path("sandbox/partners/<slug:slug>/orders/<str:reference>/lines/<int:line_id>/cancel",
         apis.SandboxPartnerCancelLineApi.as_view(), name="sandbox-cancel-line"),
    path("sandbox/partners/<slug:slug>/orders/<str:reference>/lines/<int:line_id>/responses",
         apis.SandboxPartnerHoldAnswerApi.as_view(), name="sandbox-hold-answer"),
]
