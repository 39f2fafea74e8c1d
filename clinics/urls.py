from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("clinic/switch", views.switch_clinic, name="switch-clinic"),
]
