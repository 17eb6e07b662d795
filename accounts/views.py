"""The portal's pages for keys, the team and the quickstart. Every object is looked up inside
the visitor's current tenant (accounts.portal), so another tenant's id is a 404."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.money import format_micros

from .emails import invitation_send
from .forms import ApiKeyForm, InviteForm, RoleForm, RotateForm
from .models import ApiKey, Invitation, Membership
from .portal import membership_switch, portal_view, role_allows
from .selectors import api_keys_visible
from .services import (
    InvalidInput,
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    api_key_update,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_set_role,
)


def _may_manage_all(request) -> bool:
    return role_allows(role=request.membership.role, permission="keys.all")


def _key_of(request, key_id: int) -> ApiKey:
    """A key the visitor may manage: any of the tenant's for an admin, their own for a member."""
    keys = ApiKey.objects.filter(tenant=request.tenant, pk=key_id)
    if not _may_manage_all(request):
        keys = keys.filter(created_by=request.user)
    key = keys.first()
    if key is None:
        raise Http404("no such key")
    return key


def _keys_page(request, *, form=None, new_secret: str = "", new_key=None, status: int = 200):
    keys = api_keys_visible(tenant_id=request.tenant.pk, user=None if _may_manage_all(request) else request.user)
    return render(
        request,
        "portal/keys.html",
        {"keys": keys, "form": form or ApiKeyForm(), "new_secret": new_secret, "new_key": new_key, "rotate_form": RotateForm()},
        status=status,
    )


@portal_view(permission="keys.own")
def keys(request):
    if request.method != "POST":
        return _keys_page(request)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form=form, status=400)
    try:
        key, secret = api_key_create(tenant=request.tenant, created_by=request.user, **form.service_fields())
    except InvalidInput as exc:
        form.add_error(None, str(exc))
        return _keys_page(request, form=form, status=400)
    return _keys_page(request, new_secret=secret, new_key=key)


@portal_view(permission="keys.own")
def key_edit(request, key_id: int):
    key = _key_of(request, key_id)
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            fields = form.service_fields()
            try:
                api_key_update(key=key, **{k: v for k, v in fields.items()})
            except InvalidInput as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Key {key.prefix}… saved. Changes apply to its next request.")
                return redirect("portal-keys")
    else:
        form = ApiKeyForm(
            initial={
                "name": key.name,
                "models": ", ".join(key.allowed_models or ()),
                "rpm": key.rpm,
                "tpm": key.tpm,
                "daily_cap": format_micros(key.daily_cap_micros) if key.daily_cap_micros is not None else "",
                "monthly_cap": format_micros(key.monthly_cap_micros) if key.monthly_cap_micros is not None else "",
                "expires_at": key.expires_at,
                "allowed_ips": ", ".join(key.allowed_ips or ()),
            }
        )
    return render(
        request, "portal/key_edit.html", {"key": key, "form": form, "rotate_form": RotateForm()},
        status=400 if form.errors else 200,
    )


@require_POST
@portal_view(permission="keys.own")
def key_revoke(request, key_id: int):
    key = api_key_revoke(key=_key_of(request, key_id))
    if request.htmx:
        return render(request, "portal/_key_row.html", {"key": key})
    messages.success(request, f"Key {key.prefix}… revoked: it stopped working now.")
    return redirect("portal-keys")


@require_POST
@portal_view(permission="keys.own")
def key_rotate(request, key_id: int):
    key = _key_of(request, key_id)
    form = RotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the old secret keeps working, in seconds (0 or more).")
        return redirect("portal-key", key_id=key.pk)
    try:
        key, secret = api_key_rotate(key_id=key.pk, overlap_s=form.cleaned_data["overlap_s"])
    except InvalidInput as exc:
        messages.error(request, str(exc))
        return redirect("portal-key", key_id=key.pk)
    return _keys_page(request, new_secret=secret, new_key=key)


# --- team ---------------------------------------------------------------------------------


def _member_of(request, member_id: int) -> Membership:
    membership = Membership.objects.filter(tenant=request.tenant, pk=member_id).select_related("user").first()
    if membership is None:
        raise Http404("no such member")
    return membership


@portal_view(permission="team")
def team(request):
    form = InviteForm()
    if request.method == "POST":
        form = InviteForm(request.POST)
        if form.is_valid():
            try:
                invitation, token = invitation_create(
                    tenant=request.tenant, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except InvalidInput as exc:
                form.add_error("email", str(exc))
            else:
                invitation_send(request, invitation=invitation, token=token)
                days = settings.INVITATION_TTL_S // 86400
                messages.success(request, f"Invitation sent to {invitation.email}. The link works for {days} days.")
                return redirect("portal-team")
    members = Membership.objects.filter(tenant=request.tenant).select_related("user").order_by("created_at")
    invitations = Invitation.objects.filter(tenant=request.tenant, accepted_at__isnull=True).order_by("-created_at")
    return render(
        request, "portal/team.html",
        {"members": members, "invitations": invitations, "form": form, "roles": Membership.Role.choices},
        status=400 if form.errors else 200,
    )


@require_POST
@portal_view(permission="team")
def member_role(request, member_id: int):
    membership = _member_of(request, member_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        if form.cleaned_data["role"] == Membership.Role.OWNER and request.membership.role != Membership.Role.OWNER:
            messages.error(request, "Only an owner can make someone an owner.")
        elif membership.role == Membership.Role.OWNER and request.membership.role != Membership.Role.OWNER:
            messages.error(request, "Only an owner can change an owner's role.")
        else:
            try:
                membership_set_role(membership=membership, role=form.cleaned_data["role"])
                messages.success(request, f"{membership.user.email} is now {membership.role}.")
            except InvalidInput as exc:
                messages.error(request, str(exc))
    return redirect("portal-team")


@require_POST
@portal_view(permission="team")
def member_remove(request, member_id: int):
    membership = _member_of(request, member_id)
    if membership.role == Membership.Role.OWNER and request.membership.role != Membership.Role.OWNER:
        messages.error(request, "Only an owner can remove an owner.")
        return redirect("portal-team")
    try:
        membership_remove(membership=membership)
        messages.success(request, f"{membership.user.email} left the team.")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    return redirect("portal-team")


@require_POST
@portal_view(permission="team")
def invitation_cancel(request, invite_id: int):
    invitation = Invitation.objects.filter(tenant=request.tenant, pk=invite_id).first()
    if invitation is None:
        raise Http404("no such invitation")
    invitation_revoke(invitation=invitation)
    messages.success(request, f"The invitation to {invitation.email} no longer works.")
    return redirect("portal-team")


def invitation_open(request, token: str):
    """The emailed link: sign in (or sign up) first, then accept with one click."""
    if not request.user.is_authenticated:
        messages.info(request, "Sign in, or sign up with the address the invitation was sent to, to join the team.")
        return redirect(f"{reverse('account_login')}?next={request.path}")
    if request.method == "POST":
        try:
            membership = invitation_accept(token=token, user=request.user)
        except InvalidInput as exc:
            return render(request, "portal/invitation.html", {"error": str(exc)}, status=400)
        membership_switch(request, tenant_id=membership.tenant_id)
        messages.success(request, f"You joined {membership.tenant.name} as {membership.role}.")
        return redirect("portal-dashboard")
    return render(request, "portal/invitation.html", {})


@require_POST
def switch_tenant(request):
    if not request.user.is_authenticated:
        return redirect("account_login")
    try:
        tenant_id = int(request.POST.get("tenant_id", ""))
    except ValueError:
        raise Http404("no such team") from None
    if membership_switch(request, tenant_id=tenant_id) is None:
        raise Http404("no such team")
    return redirect("portal-dashboard")


# --- quickstart ---------------------------------------------------------------------------


def base_url_of(request) -> str:
    return (settings.PORTAL_BASE_URL or request.build_absolute_uri("/")).rstrip("/")


@portal_view(permission="view")
def quickstart(request):
    return render(request, "portal/quickstart.html", {"base_url": base_url_of(request)})


