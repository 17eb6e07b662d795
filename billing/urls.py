from django.urls import path

from . import views

urlpatterns = [
    path("ledger/", views.ledger, name="portal-ledger"),
]
