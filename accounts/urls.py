from django.urls import path

from . import views

urlpatterns = [
    path("keys/", views.keys, name="portal-keys"),
    path("keys/<int:key_id>/", views.key_edit, name="portal-key"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="portal-key-revoke"),
    path("keys/<int:key_id>/rotate/", views.key_rotate, name="portal-key-rotate"),
    path("team/", views.team, name="portal-team"),
    path("team/members/<int:member_id>/role/", views.member_role, name="portal-member-role"),
    path("team/members/<int:member_id>/remove/", views.member_remove, name="portal-member-remove"),
    path("team/invitations/<int:invite_id>/cancel/", views.invitation_cancel, name="portal-invitation-cancel"),
    path("invite/<str:token>/", views.invitation_open, name="portal-invitation"),
    path("switch/", views.switch_tenant, name="portal-switch"),
    path("quickstart/", views.quickstart, name="portal-quickstart"),
]
