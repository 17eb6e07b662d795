from django.urls import path

from . import pricing_page, views

urlpatterns = [
    path("ledger/", views.ledger, name="portal-ledger"),
    path("pricing/", pricing_page.pricing, name="portal-pricing"),
]
