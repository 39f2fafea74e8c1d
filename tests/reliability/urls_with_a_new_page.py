"""The project's URLs plus pages nobody classified yet (tenancy sweep self-test)."""

from django.http import HttpResponse
from django.urls import include, path

from fizy.urls import urlpatterns as project

new_carts = ([path("cart/new-page/<int:pk>", lambda request, pk: HttpResponse("x"), name="new-page")], "carts")

urlpatterns = [
    path("x/", include(new_carts)),
    path("exports/<int:pk>", lambda request, pk: HttpResponse("x"), name="my-export"),
    *project,
]
