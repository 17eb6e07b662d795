from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("topup/", views.topup, name="topup"),
    path("topup/success/", views.topup_success, name="topup_success"),
    path("topup/cancel/", views.topup_cancel, name="topup_cancel"),
    path("topup/alerts/", views.alerts_update, name="alerts_update"),
    path("redeem/", views.redeem, name="redeem"),
    path("billing/stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
