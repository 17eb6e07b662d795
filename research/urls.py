from django.urls import path

from . import views

urlpatterns = [
    path("", views.runs, name="research-runs"),
    path("<int:run_id>/", views.run_detail, name="research-run"),
    path("<int:run_id>/status/", views.run_status, name="research-run-status"),
    path("<int:run_id>/duplicate/", views.run_duplicate, name="research-run-duplicate"),
    path("<int:run_id>/delete/", views.run_delete, name="research-run-delete"),
    path("<int:run_id>/report.pdf", views.run_pdf, name="research-run-pdf"),
]
