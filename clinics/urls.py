from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("clinic/switch", views.switch_clinic, name="switch-clinic"),
    path("clinic/billing", views.billing, name="billing"),
    path("clinic/billing/setup", views.billing_setup, name="billing-setup"),
    path("clinic/billing/card", views.billing_card, name="billing-card"),
]
