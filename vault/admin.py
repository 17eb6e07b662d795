"""The vault in the admin: its state (never a key or a secret) and the lock, unlock and rotate
actions; passwords are typed into a form of their own, never kept in a log or a message."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from .crypto import SecretUnreadable
from .models import VaultState
from .services import vault_lock, vault_rotate, vault_unlock


class UnlockForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, strip=False)


class RotateForm(forms.Form):
    password = forms.CharField(label="Current password", widget=forms.PasswordInput, strip=False)
    new_password = forms.CharField(label="New password (12 characters or more)", widget=forms.PasswordInput, strip=False, min_length=12)


@admin.register(VaultState)
class VaultStateAdmin(admin.ModelAdmin):
    list_display = ("__str__", "is_locked", "generation", "changed_at")
    fields = ("is_locked", "generation", "created_at", "changed_at")
    readonly_fields = fields
    actions = ("lock", "unlock", "rotate")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting it would lose every sealed credential

    @admin.action(description="Lock the vault in every process", permissions=["change"])
    def lock(self, request, queryset):
        vault_lock()
        self.message_user(request, "Vault locked: channels that need a credential are skipped until it is unlocked.", messages.SUCCESS)

    @admin.action(description="Unlock the vault…", permissions=["change"])
    def unlock(self, request, queryset):
        return self._password_step(request, queryset, UnlockForm, "unlock", "Unlock the vault", lambda data: (
            vault_unlock(password=data["password"]), "Vault unlocked."))

    @admin.action(description="Rotate the vault password…", permissions=["change"])
    def rotate(self, request, queryset):
        def apply(data):
            _, count = vault_rotate(password=data["password"], new_password=data["new_password"])
            return None, f"Re-sealed {count} credential(s). Set TOKENHUB_VAULT_PASSWORD to the new password before the next restart."

        return self._password_step(request, queryset, RotateForm, "rotate", "Rotate the vault password", apply)

    def _password_step(self, request, queryset, form_class, action, title, apply):
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            try:
                _, message = apply(form.cleaned_data)
            except (SecretUnreadable, ValueError) as exc:
                self.message_user(request, f"{exc}; nothing changed.", messages.ERROR)
            else:
                self.message_user(request, message, messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/vault/password_form.html",
            {**self.admin_site.each_context(request), "title": title, "objects": queryset, "form": form,
             "action": action, "opts": self.model._meta, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME},
        )
