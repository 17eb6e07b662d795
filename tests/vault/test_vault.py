"""Upstream credentials are sealed at rest; a wrong vault password locks them, and channels
that need one are skipped with that reason, never with the secret."""

import openai
import pytest

from channels.models import Channel
from tests.conftest import make_channel, make_price
from vault import services as vault
from vault.crypto import VaultLocked, derive_kek, seal, unseal


def test_a_sealed_secret_opens_only_with_its_key():
    salt = b"0123456789abcdef"
    token = seal(derive_kek("right", salt), "sk-upstream")
    assert token.startswith("v1.") and "sk-upstream" not in token
    assert unseal(derive_kek("right", salt), token) == "sk-upstream"
    with pytest.raises(VaultLocked):
        unseal(derive_kek("wrong", salt), token)


def test_two_seals_of_one_secret_differ():
    kek = derive_kek("pw", b"0123456789abcdef")
    assert seal(kek, "same") != seal(kek, "same")


@pytest.fixture
def fresh_vault():
    vault.vault_forget()
    yield
    vault.vault_forget()


def test_a_wrong_vault_password_skips_the_channel_and_says_why(relay, alice, upstream_factory, settings, fresh_vault):
    upstream = upstream_factory(name="sealed")
    settings.TOKENHUB_VAULT_PASSWORD = "the-right-one"
    make_price("gpt-test", "1", "2")
    make_channel("sealed", upstream.url + "/v1", models=["gpt-test"], api_key="sk-sealed-upstream-key")
    assert "sk-sealed-upstream-key" not in Channel.objects.get(name="sealed").credential

    vault.vault_forget()  # a restart with another password
    settings.TOKENHUB_VAULT_PASSWORD = "a-wrong-one"
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "no_available_channel"
    assert "sealed: vault locked" in caught.value.message
    assert "sk-sealed" not in caught.value.response.text
    assert upstream.requests == []

    vault.vault_forget()  # and back with the right one
    settings.TOKENHUB_VAULT_PASSWORD = "the-right-one"
    from channels.table import table_invalidate

    table_invalidate()
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-sealed-upstream-key"
