"""A model id never collides with an alias: a request naming it would mean two models. Each path
that makes a model (add_channel, set_model, POST /api/v1/models, the admin, discovery) goes
through channels.services.model_ensure, which refuses an id that is another model's alias and
names that model."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from channels.models import Channel, Model
from channels.services import model_set

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "model id 'mini' is already an alias of gpt-4o-mini"


@pytest.fixture(autouse=True)
def mini():
    return model_set(public_id="gpt-4o-mini", aliases=["mini"])


@pytest.fixture
def ops(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "a long operator password"))
    return client


def test_add_channel_refuses_a_model_named_like_an_alias_and_names_its_model():
    with pytest.raises(CommandError, match=REFUSED):
        call_command("add_channel", "a1", "--type", "simulated", "--base-url", "simulated://x", "--models", "mini", "--json")

    assert not Channel.objects.exists() and list(Model.objects.values_list("public_id", flat=True)) == ["gpt-4o-mini"]


def test_set_model_refuses_to_make_a_model_of_an_alias():
    with pytest.raises(CommandError, match=REFUSED):
        call_command("set_model", "mini", "--json")

    assert not Model.objects.filter(public_id="mini").exists()


def test_the_alias_keeps_working_for_its_model_afterwards():
    with pytest.raises(CommandError):
        call_command("set_model", "mini", "--json")
    out = StringIO()
    call_command("set_model", "gpt-4o-mini", "--aliases", "mini,small", "--json", stdout=out)

    assert Model.objects.get(public_id="gpt-4o-mini").aliases == ["mini", "small"]


def test_an_existing_model_is_still_found_by_its_id():
    call_command("add_channel", "a1", "--type", "simulated", "--base-url", "simulated://x", "--models", "gpt-4o-mini", "--json",
                 stdout=StringIO())

    assert Channel.objects.get(name="a1").channel_models.get().model.public_id == "gpt-4o-mini"


def test_the_management_api_refuses_a_model_named_like_an_alias(client):
    out = StringIO()
    call_command("create_operator_token", "ops", "--json", stdout=out)
    token = json.loads(out.getvalue())["token"]

    response = client.post("/api/v1/models", data=json.dumps({"public_id": "mini"}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 400, response.content
    assert REFUSED in response.json()["error"]["message"]
    assert not Model.objects.filter(public_id="mini").exists()


def test_the_admin_refuses_a_model_named_like_an_alias(ops):
    page = ops.post("/admin/channels/model/add/", {"public_id": "mini", "aliases": "[]", "_save": "Save"})

    assert page.status_code == 200 and REFUSED in page.content.decode().replace("&#x27;", "'")
    assert not Model.objects.filter(public_id="mini").exists()


def test_the_admin_refuses_an_alias_that_is_a_model_id(ops):
    model_set(public_id="claude-3-5-haiku")
    page = ops.post("/admin/channels/model/add/", {"public_id": "haiku-latest", "aliases": '["claude-3-5-haiku"]', "_save": "Save"})

    assert page.status_code == 200 and "alias 'claude-3-5-haiku' is already a model id" in page.content.decode().replace("&#x27;", "'")
    assert not Model.objects.filter(public_id="haiku-latest").exists()
