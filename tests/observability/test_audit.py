"""The audit log: every operator mutation, from the admin, a command or the management API's
service, leaves exactly one record naming its actor; secrets never reach it; nobody rewrites it."""

import getpass
import json
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from accounts.models import ApiKey, Tenant
from observability.admin_audit import AuditedAdmin
from observability.models import AuditRecord, RequestLog
from observability.redact import REDACTED
from observability.services import audit_record
from channels.models import Channel
from tests.conftest import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_SECRET = "sk-upstream-4f9d2c7e1b8a"


@pytest.fixture
def operator(client):
    user = User.objects.create_superuser("op", "op@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def stored_text() -> str:
    return json.dumps(list(AuditRecord.objects.values()), default=str)


def run_json(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


# --- admin ------------------------------------------------------------------------------------


def test_an_admin_change_form_leaves_one_record_with_the_user(operator):
    tenant = make_tenant("acme")
    before_count = AuditRecord.objects.count()
    response = operator.post(
        f"/admin/accounts/tenant/{tenant.pk}/change/", {"name": "acme", "group": "vip", "status": "active", "timezone": "UTC"}
    )
    assert response.status_code == 302, response.content[:500]
    assert AuditRecord.objects.count() == before_count + 1
    record = AuditRecord.objects.latest("id")
    assert (record.actor, record.action, record.target_type, record.target_id) == ("op", "admin.change", "accounts.tenant", str(tenant.pk))
    assert record.before["group"] == "default" and record.after["group"] == "vip"


def test_an_admin_add_and_delete_each_leave_one_record(operator):
    response = operator.post("/admin/auth/group/add/", {"name": "support"})
    assert response.status_code == 302
    added = AuditRecord.objects.get(action="admin.add")
    assert (added.actor, added.target_type, added.after["name"]) == ("op", "auth.group", "support")
    group_id = added.target_id
    assert operator.post(f"/admin/auth/group/{group_id}/delete/", {"post": "yes"}).status_code == 302
    deleted = AuditRecord.objects.get(action="admin.delete")
    assert (deleted.actor, deleted.target_id, deleted.before["name"], deleted.after) == ("op", group_id, "support", None)


def test_an_admin_action_leaves_one_record_per_changed_object_without_the_key_hash(operator, alice):
    key = ApiKey.objects.get(pk=alice.key_id)
    response = operator.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    records = list(AuditRecord.objects.filter(action="admin.action.revoke"))
    assert len(records) == 1
    assert (records[0].actor, records[0].target_id) == ("op", str(key.pk))
    assert records[0].before["status"] == "active" and records[0].after["status"] == "revoked"
    assert records[0].after["key_hash"] == REDACTED
    assert key.key_hash not in stored_text() and alice.key not in stored_text()


def test_an_action_that_only_shows_a_form_records_nothing(operator):
    channel = Channel.objects.create(name="c1", provider_type="openai", base_url="http://127.0.0.1:9/v1")
    page = operator.post("/admin/channels/channel/", {"action": "disable_channels", "_selected_action": [channel.pk]})
    assert page.status_code == 200  # the "why?" form
    assert not AuditRecord.objects.filter(target_type="routing.channel").exists()


def test_a_user_password_change_keeps_no_password_hash(operator):
    user = User.objects.create_user("ops2", password="first-password-123")
    response = operator.post(
        f"/admin/auth/user/{user.pk}/password/", {"password1": "second-password-456", "password2": "second-password-456", "usable_password": "true"}
    )
    assert response.status_code == 302, response.content[:300]
    record = AuditRecord.objects.get(target_type="auth.user", target_id=str(user.pk))
    assert record.actor == "op"
    assert record.after["password"] == REDACTED
    assert User.objects.get(pk=user.pk).password not in stored_text()


def test_every_model_admin_is_audited_or_read_only():
    for model, model_admin in admin.site._registry.items():
        if isinstance(model_admin, AuditedAdmin):
            continue
        # what is not audited must offer no mutation at all
        assert model in (AuditRecord, RequestLog), f"{model.__name__}'s admin is not an AuditedAdmin"
        assert not model_admin.has_add_permission(None)
        assert not model_admin.has_change_permission(None) and not model_admin.has_delete_permission(None)


def test_the_admin_offers_no_change_or_delete_of_audit_records(operator):
    record = audit_record(actor="op", action="test", target_type="x", target_id=1, before=None, after={"a": 1})
    page = operator.get(f"/admin/observability/auditrecord/{record.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert operator.post(f"/admin/observability/auditrecord/{record.pk}/change/", {"actor": "someone else"}).status_code == 403
    assert operator.post(f"/admin/observability/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditRecord.objects.get(pk=record.pk).actor == "op"
    listing = operator.get("/admin/observability/auditrecord/?action=test")
    assert listing.status_code == 200 and b"test" in listing.content


# --- commands -----------------------------------------------------------------------------------


def test_a_command_leaves_one_record_with_the_os_user():
    made = run_json("create_tenant", "acme")
    records = list(AuditRecord.objects.all())
    assert len(records) == 1
    record = records[0]
    assert record.actor == f"cli:{getpass.getuser()}"
    assert (record.action, record.target_id) == ("cli.create_tenant", str(made["id"]))
    assert record.after["arguments"]["name"] == "acme"


def test_a_command_never_stores_the_secrets_it_handled():
    make_tenant("acme")
    created = run_json("create_api_key", "acme", "--name", "ci")
    run_json(
        "add_channel", "up", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-key", UPSTREAM_SECRET, "--models", "gpt-x", "--no-check"
    )
    text = stored_text()
    assert created["key"] not in text and UPSTREAM_SECRET not in text
    channel_record = AuditRecord.objects.get(action="cli.add_channel")
    assert channel_record.after["arguments"]["api_key"] == REDACTED
    assert AuditRecord.objects.filter(action="cli.create_api_key").count() == 1


def test_a_failed_command_leaves_no_record():
    with pytest.raises(CommandError):
        call_command("create_api_key", "nobody")
    assert not AuditRecord.objects.exists()


def test_a_read_only_command_leaves_no_record():
    make_tenant("acme")
    run_json("balance", "acme")
    run_json("audit_ledger")
    assert not AuditRecord.objects.exists()


# --- the service the management API calls ----------------------------------------------------------


def test_the_service_records_an_api_mutation_with_its_token_and_redacts():
    record = audit_record(
        actor="token:deploy-bot", action="api.channel.update", target_type="routing.channel", target_id=7,
        before={"base_url": "http://a/v1", "credential": "vault:v1:abc"}, after={"base_url": "http://b/v1", "api_key": UPSTREAM_SECRET, "note": UPSTREAM_SECRET},
    )
    stored = AuditRecord.objects.get(pk=record.pk)
    assert (stored.actor, stored.target_id) == ("token:deploy-bot", "7")
    assert stored.before == {"base_url": "http://a/v1", "credential": REDACTED}
    assert stored.after == {"base_url": "http://b/v1", "api_key": REDACTED, "note": REDACTED}
    assert AuditRecord.objects.count() == 1


def test_the_service_takes_keyword_arguments_only_and_needs_an_actor():
    with pytest.raises(TypeError):
        audit_record("op", "x", "y", 1, None, None)
    with pytest.raises(ValueError):
        audit_record(actor="", action="x", target_type="y", target_id=1, before=None, after=None)


def test_postgresql_refuses_to_rewrite_the_audit_log():
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's; the embedded default relies on the admin refusing")
    record = audit_record(actor="op", action="x", target_type="y", target_id=1, before=None, after=None)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(pk=record.pk).update(actor="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(pk=record.pk).delete()
    assert AuditRecord.objects.get(pk=record.pk).actor == "op"
