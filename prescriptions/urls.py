from django.urls import path

from . import views

app_name = "prescriptions"

urlpatterns = [
    path("prescriptions/<int:pk>/document", views.document, name="document"),
]
