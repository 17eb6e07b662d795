from django.contrib import admin
from django.urls import path

from relay.api import api as management_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", management_api.urls),
]
