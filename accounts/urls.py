from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("account/two-factor/", views.enrol, name="enrol"),
    path("account/two-factor/verify/", views.verify, name="verify"),
    path("account/two-factor/recovery-codes/", views.new_recovery_codes, name="recovery-codes"),
]
