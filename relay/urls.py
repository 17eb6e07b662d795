from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # --- customer portal (issue 11): allauth at the root gives /signup/, /login/, /logout/ ---
    path("", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("observability.urls")),
    path("", include("billing.urls")),
    path("", include("routing.portal_urls")),
]
