from django.urls import path

from . import ledger_page, pricing_page, views

app_name = "billing"

urlpatterns = [
    path("ledger/", ledger_page.ledger, name="portal-ledger"),
    path("pricing/", pricing_page.pricing, name="portal-pricing"),
    path("topup/", views.topup, name="topup"),
    path("topup/success/", views.topup_success, name="topup_success"),
    path("topup/cancel/", views.topup_cancel, name="topup_cancel"),
    path("topup/alerts/", views.alerts_update, name="alerts_update"),
    path("redeem/", views.redeem, name="redeem"),
    path("billing/stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
