"""`seed_demo` (and so `make run`) keeps working whatever the operator did to the catalog since:
it adds what is missing, undoes nothing, and leaves out a demo name that something else holds,
saying so in one line on stderr."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from channels.models import ChannelModel, Model
from channels.services import model_set

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def seed() -> tuple[dict, str]:
    out, err = StringIO(), StringIO()
    call_command("seed_demo", "--json", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


def test_seed_demo_runs_again_after_its_alias_was_given_to_another_model():
    seed()
    model_set(public_id="gpt-4o-mini", aliases=[])
    model_set(public_id="claude-3-5-haiku", aliases=["demo"])

    result, err = seed()

    assert err == "seed_demo: left out alias 'demo' of gpt-4o-mini: 'demo' is already an alias of claude-3-5-haiku\n"
    assert result["left_out"] == ["alias 'demo' of gpt-4o-mini: 'demo' is already an alias of claude-3-5-haiku"]
    assert Model.objects.get(public_id="claude-3-5-haiku").aliases == ["demo"]


def test_seed_demo_runs_on_a_catalog_where_its_alias_became_a_model_id():
    seed()
    Model.objects.create(public_id="demo")  # made before model ids were checked against aliases

    result, err = seed()

    assert err == "seed_demo: left out alias 'demo' of gpt-4o-mini: 'demo' is already a model id\n"
    assert result["key"]


def test_seed_demo_leaves_out_a_demo_model_whose_id_is_an_alias_and_seeds_the_rest():
    model_set(public_id="my-mini", aliases=["gpt-4o-mini"])

    result, err = seed()

    assert err == "seed_demo: left out model 'gpt-4o-mini': it is an alias of my-mini\n"
    assert not Model.objects.filter(public_id="gpt-4o-mini").exists()
    assert ChannelModel.objects.filter(channel__name="demo-primary", model__public_id="deepseek-chat").exists()
    assert result["key"]


def test_seed_demo_keeps_the_operators_aliases_and_limits():
    seed()
    model_set(public_id="gpt-4o-mini", aliases=["demo", "mini"], max_output=1000)

    _, err = seed()

    model = Model.objects.get(public_id="gpt-4o-mini")
    assert (model.aliases, model.max_output, model.context_window) == (["demo", "mini"], 1000, 128_000)
    assert err == ""
