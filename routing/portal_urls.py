from django.urls import path

from . import portal

urlpatterns = [
    path("pricing/", portal.pricing, name="portal-pricing"),
]
