from django.urls import path

from . import views

app_name = "carts"

urlpatterns = [
    path("cart/", views.cart, name="cart"),
    path("cart/patients", views.picker_results, {"kind": "patient"}, name="patient-results"),
    path("cart/products", views.picker_results, {"kind": "product"}, name="product-results"),
    path("cart/add-panel", views.add_panel, name="add-panel"),
    path("cart/patients/new", views.patient_new, name="patient-new"),
    path("cart/lines", views.line_add, name="line-add"),
    path("cart/lines/<int:pk>", views.line_row, name="line"),
    path("cart/lines/<int:pk>/save", views.line_save, name="line-save"),
    path("cart/lines/<int:pk>/remove", views.line_remove, name="line-remove"),
    path("cart/lines/<int:pk>/acknowledge", views.line_acknowledge, name="line-acknowledge"),
    path("cart/lines/<int:pk>/fix", views.line_fix, name="line-fix"),
    path("cart/lines/<int:pk>/prescription", views.line_prescription, name="line-prescription"),
    path("cart/acknowledge-all", views.acknowledge_all, name="acknowledge-all"),
    path("cart/patients/<int:pk>/fix", views.patient_fix, name="patient-fix"),
    path("cart/validate", views.validate, name="validate"),
    path("cart/checkout", views.checkout, name="checkout"),
    path("cart/refills", views.refills, name="refills"),
    path("cart/refills/prescriptions-needed.csv", views.prescriptions_needed_csv, name="prescriptions-needed-csv"),
    path("cart/reorder/<int:line_pk>", views.reorder, name="reorder"),
    path("cart/import", views.import_csv, name="import"),
    path("cart/import/confirm", views.import_confirm, name="import-confirm"),
    path("cart/import/cancel", views.import_cancel, name="import-cancel"),
    path("cart/import/sample.csv", views.import_sample, name="import-sample"),
]
