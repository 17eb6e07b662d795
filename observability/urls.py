from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="portal-dashboard"),
    path("usage/", views.usage, name="portal-usage"),
    path("logs/", views.logs, name="portal-logs"),
    path("logs/<int:log_id>/", views.log_detail, name="portal-log"),
]
