"""The operator's routing console in the Django admin."""

import pytest
from django.urls import reverse

from tests.conftest import make_channel, make_price
from tests.conftest import chat, flush_all


@pytest.fixture
def channels(upstreams, transactional_db):
    primary, backup = upstreams("primary", "backup", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("primary", primary.url + "/v1", models=["gpt-test"], priority=10, brand="acme")
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0, brand="acme")
    return primary, backup


@pytest.fixture
def operator(client, transactional_db):
    from django.contrib.auth.models import User

    user = User.objects.create_superuser("ops", "ops@example.com", "a long operator password")
    client.force_login(user)
    return client


def channel(name):
    from channels.models import Channel

    return Channel.objects.get(name=name)


def test_the_channel_list_shows_live_health_and_why_a_channel_is_disabled(operator, channels):
    from channels.health.board import board
    from channels.health.status import channel_operator_set

    board.cool(channel("primary").pk, seconds=60, reason="rate limited (429)")
    channel_operator_set(channel=channel("backup"), is_enabled=False, reason="contract ended")
    page = operator.get(reverse("admin:channels_channel_changelist")).content.decode()
    assert "cooling until" in page and "rate limited (429)" in page
    assert "contract ended" in page and "disabled</span> since" in page


def test_disable_asks_for_a_reason_then_disables(operator, channels):
    url = reverse("admin:channels_channel_changelist")
    pk = channel("primary").pk
    form = operator.post(url, {"action": "disable_channels", "_selected_action": [pk]})
    assert form.status_code == 200 and b"reason" in form.content
    assert channel("primary").status == "enabled"
    done = operator.post(url, {"action": "disable_channels", "_selected_action": [pk], "apply": "1", "reason": "upstream migration"})
    assert done.status_code == 302
    disabled = channel("primary")
    assert (disabled.status, disabled.status_reason) == ("disabled", "upstream migration")
    assert disabled.status_changed_at is not None

    operator.post(url, {"action": "enable_channels", "_selected_action": [pk]})
    assert channel("primary").status == "enabled"


def test_test_channel_sends_a_tiny_real_request(operator, channels):
    primary, _ = channels
    url = reverse("admin:channels_channel_changelist")
    response = operator.post(url, {"action": "test_channels", "_selected_action": [channel("primary").pk]}, follow=True)
    assert b"rimary / gpt-test: answered in" in response.content  # the admin capitalizes messages
    sent = primary.requests[-1].json
    assert sent["max_tokens"] == 1 and sent["model"] == "gpt-test"
    primary.set_mode("500")
    response = operator.post(url, {"action": "test_channels", "_selected_action": [channel("primary").pk]}, follow=True)
    assert b"rimary / gpt-test: failed after" in response.content
    from channels.models import ChannelHealth

    assert ChannelHealth.objects.get(channel=channel("primary")).last_probe_ok is False


def test_the_route_tree_shows_type_brand_channel_models_and_order(operator, channels):
    page = operator.get(reverse("admin:channels_route_tree")).content.decode()
    assert page.index("<h2>openai</h2>") < page.index(">acme</h3>") < page.index(">primary</a>") < page.index(">backup</a>")
    assert "primary</span>" in page and "backup 1</span>" in page


def test_the_simulator_page_ranks_candidates_without_sending(operator, channels):
    primary, backup = channels
    page = operator.get(reverse("admin:channels_simulator"), {"model": "gpt-test", "group": "default", "mode": "weighted", "seed": "1"})
    text = page.content.decode()
    assert '<b id="choice">primary</b>' in text
    assert text.count('class="candidate"') == 2
    assert len(primary.requests) == len(backup.requests) == 0


def test_the_requests_page_explains_where_a_request_went(operator, relay, alice, channels):
    primary, _ = channels
    primary.set_mode("500")
    request_id = chat(relay, alice.key).headers["x-request-id"]
    flush_all()
    page = operator.get(reverse("admin:channels_requests"), {"request_id": request_id}).content.decode()
    assert "answered by <b>backup</b>" in page
    assert "transient" in page and "weighted" in page


def test_someone_without_staff_access_is_sent_to_login(client, channels):
    for name in ("channels_route_tree", "channels_simulator", "channels_requests", "channels_channel_changelist"):
        response = client.get(reverse(f"admin:{name}"))
        assert response.status_code == 302 and "/admin/login/" in response["location"]


def test_channel_models_can_be_disabled_with_a_reason(operator, channels):
    from channels.models import ChannelModel

    link = ChannelModel.objects.get(channel__name="primary")
    url = reverse("admin:channels_channelmodel_changelist")
    operator.post(url, {"action": "disable_routes", "_selected_action": [link.pk], "apply": "1", "reason": "model retired upstream"})
    link.refresh_from_db()
    assert link.is_enabled is False
    page = operator.get(url).content.decode()
    assert "model retired upstream" in page
