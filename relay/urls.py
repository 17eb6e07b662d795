from django.contrib import admin
from django.urls import include, path

from relay.api import api as management_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", management_api.urls),
    # --- customer portal (issue 11): allauth at the root gives /signup/, /login/, /logout/ ---
    path("", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("observability.urls")),
    path("", include("billing.urls")),
    path("research/", include("research.urls")),  # research workspace (issue 15)
]
