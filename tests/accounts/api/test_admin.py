"""The admin's part of operator self-service: write-only channel credentials, keys made with
their secret shown once, the request-log browser, no bulk delete of channels with history."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from accounts.models import ApiKey
from accounts.selectors import key_hash
from channels.models import Channel
from tests.conftest import make_channel, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ops(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "a long operator password"))
    return client


def _log(channel_id=None, request_id="r1", model="gpt-test", status=200):
    from observability.services import request_log_submit, request_logs_flush

    request_log_submit(entry={"request_id": request_id, "tenant_id": 1, "key_id": 1, "model": model, "status": status, "channel_id": channel_id,
                              "endpoint": "chat.completions", "latency_ms": 1, "overhead_ms": 0.1, "attempts": [], "prompt_tokens": 1,
                              "completion_tokens": 1, "cost_micros": 3, "currency": "USD", "created_at": timezone.now(),
                              "channel_name": "", "candidates": [], "error_class": "", "ttft_ms": None, "is_stream": False})
    request_logs_flush()


def test_channel_credential_is_write_only_in_the_admin(ops):
    from vault.services import secret_unseal, vault_forget

    vault_forget()  # a key cached by an earlier test belongs to a database since flushed
    channel = make_channel("sim", "sim://", provider_type="simulated", models=("m1",))
    url = f"/admin/channels/channel/{channel.pk}/change/"
    page = ops.get(url)
    assert page.status_code == 200 and 'name="new_api_key"' in page.content.decode()
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in ("groups", "options")}
    data.update({"groups": '["default"]', "options": "{}", "new_api_key": "sk-admin-secret", "_save": "Save",
                 "channel_models-TOTAL_FORMS": "0", "channel_models-INITIAL_FORMS": "0", "health-TOTAL_FORMS": "0", "health-INITIAL_FORMS": "0"})
    saved = ops.post(url, data)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    sealed = Channel.objects.get(pk=channel.pk).credential
    assert secret_unseal(token=sealed) == "sk-admin-secret"
    again = ops.get(url).content.decode()
    assert "sk-admin-secret" not in again and sealed not in again and "set (hidden)" in again


def test_api_key_made_in_the_admin_shows_its_secret_once(ops):
    tenant = make_tenant("acme")
    response = ops.post("/admin/accounts/apikey/add/", {"tenant": tenant.pk, "name": "from admin", "allowed_models": "[]",
                                                        "allowed_ips": "[]", "rpm": "30", "mode": ""})
    assert response.status_code == 302
    key = ApiKey.objects.get(name="from admin")
    shown = [str(m) for m in get_messages(response.wsgi_request) if "shown only this once" in str(m)]
    secret = shown[0].split("The new key is ")[1].split(" ")[0]
    assert key.key_hash == key_hash(secret) and key.rpm == 30
    ops.get(f"/admin/accounts/apikey/{key.pk}/change/")  # the page after the redirect shows the message, once
    assert secret not in ops.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()


def test_request_log_browser_filters_searches_and_drills_by_date(ops):
    _log(request_id="req-aaa", model="gpt-a")
    _log(request_id="req-bbb", model="gpt-b", status=502)
    listing = ops.get("/admin/observability/requestlog/", {"status__exact": "502"}).content.decode()
    assert "req-bbb" in listing and "req-aaa" not in listing
    found = ops.get("/admin/observability/requestlog/", {"q": "req-aaa"}).content.decode()
    assert "req-aaa" in found and "req-bbb" not in found
    today = timezone.now()
    drilled = ops.get("/admin/observability/requestlog/", {"created_at__year": today.year, "created_at__month": today.month})
    assert drilled.status_code == 200 and "req-aaa" in drilled.content.decode()


def test_no_bulk_delete_of_channels_with_history(ops):
    used = make_channel("used", "sim://", provider_type="simulated", models=("m1",))
    unused = make_channel("unused", "sim://", provider_type="simulated", models=("m1",))
    _log(channel_id=used.pk)
    changelist = ops.get("/admin/channels/channel/").content.decode()
    assert 'value="delete_selected"' not in changelist
    ops.post("/admin/channels/channel/", {"action": "delete_unused_channels", "_selected_action": [used.pk, unused.pk]})
    assert Channel.objects.filter(pk=used.pk).exists() and not Channel.objects.filter(pk=unused.pk).exists()
    assert ops.get(f"/admin/channels/channel/{used.pk}/delete/").status_code == 403


def test_plural_names_are_english():
    from django.apps import apps

    for model in apps.get_models():
        plural = str(model._meta.verbose_name_plural)
        assert not plural.endswith(("ys", "ss", "hs")) or plural.endswith(("keys", "days")), (model, plural)
