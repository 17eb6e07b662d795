"""/v1/images/generations, /v1/audio/transcriptions, /v1/audio/speech and /v1/moderations through
the official openai SDK, against the fake OpenAI upstream: answered, charged per request, image
or second as set_price says (once), refused with 402 when unaffordable and with 400 for a bad
body, nothing sent upstream in either case."""

from __future__ import annotations

import io
import wave

import httpx
import openai
import pytest

from tests.conftest import make_channel, make_price, settle_background
from tests.fakes.openai_upstream import SPEECH_AUDIO, TRANSCRIPT, form_fields
from tests.routing.conftest import ledger_charge

ALL = ["images.generations", "audio.transcriptions", "audio.speech", "moderations"]


def wav_bytes(seconds: int, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(1)
        audio.setframerate(rate)
        audio.writeframes(b"\x80" * rate * seconds)
    return buffer.getvalue()


def price(model: str = "m-media", **usd) -> None:
    from billing.services import price_set

    price_set(model=model, **usd)


def serve(fake, *, name: str = "media", endpoints=ALL, model: str = "m-media", **channel):
    return make_channel(name, fake.url + "/v1", models=[(model, "upstream-media")], api_key="sk-media-upstream", options={"endpoints": list(endpoints)}, **channel)


def nothing_charged() -> None:
    from billing.models import Hold, LedgerEntry

    settle_background()
    assert not Hold.objects.filter(status=Hold.Status.OPEN).exists()
    assert not LedgerEntry.objects.exclude(idempotency_key__startswith="test:").exists()


def test_images_are_charged_per_request_and_per_image(openai_client, openai_upstream):
    price(request_usd="0.01", image_usd="0.04")
    serve(openai_upstream)

    raw = openai_client.images.with_raw_response.generate(model="m-media", prompt="a red fox", n=2, response_format="b64_json")

    assert len(raw.parse().data) == 2
    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/images/generations" and sent.json["model"] == "upstream-media" and sent.json["n"] == 2
    assert sent.headers["authorization"] == "Bearer sk-media-upstream"
    assert ledger_charge(raw.headers["x-request-id"]) == 10_000 + 2 * 40_000


def test_an_upstream_that_returns_more_images_than_asked_is_paid_for_n(openai_client, openai_upstream):
    price(image_usd="0.04")
    serve(openai_upstream)
    openai_upstream.settings.images = 5

    raw = openai_client.images.with_raw_response.generate(model="m-media", prompt="a red fox", n=1)

    assert ledger_charge(raw.headers["x-request-id"]) == 40_000


def test_a_transcription_is_uploaded_as_multipart_and_charged_per_reported_second(openai_client, openai_upstream):
    price(second_usd="0.0001")
    serve(openai_upstream)
    openai_upstream.settings.audio_seconds = 1.2
    audio = wav_bytes(2)

    raw = openai_client.audio.transcriptions.with_raw_response.create(model="m-media", file=("hello.wav", audio, "audio/wav"), language="en")

    assert raw.parse().text == TRANSCRIPT
    form = form_fields(openai_upstream.requests[-1])
    assert form["model"] == "upstream-media" and form["language"] == "en"
    assert form["file"] == ("hello.wav", audio)
    assert ledger_charge(raw.headers["x-request-id"]) == 2 * 100  # 1.2 s billed as 2 whole seconds


def test_a_transcription_is_billed_no_longer_than_the_upload(openai_client, openai_upstream):
    price(second_usd="0.0001")
    serve(openai_upstream)
    openai_upstream.settings.audio_seconds = 900  # the upstream lies: the file lasts 1 s

    raw = openai_client.audio.transcriptions.with_raw_response.create(model="m-media", file=("a.wav", wav_bytes(1), "audio/wav"))

    assert ledger_charge(raw.headers["x-request-id"]) == 100


def test_a_text_transcription_without_a_report_is_billed_the_measured_length(openai_client, openai_upstream):
    price(request_usd="0.001", second_usd="0.0001")
    serve(openai_upstream)

    raw = openai_client.audio.transcriptions.with_raw_response.create(
        model="m-media", file=("a.wav", wav_bytes(3), "audio/wav"), response_format="text"
    )

    assert raw.http_response.text == TRANSCRIPT
    assert raw.headers["content-type"].startswith("text/plain")
    assert ledger_charge(raw.headers["x-request-id"]) == 1_000 + 3 * 100


def test_speech_answers_the_audio_bytes_and_is_charged_per_request(openai_client, openai_upstream):
    price(request_usd="0.015")
    serve(openai_upstream)

    raw = openai_client.audio.speech.with_raw_response.create(model="m-media", voice="alloy", input="Hello there")

    assert raw.http_response.content == SPEECH_AUDIO
    assert raw.headers["content-type"] == "audio/mpeg"
    assert openai_upstream.requests[-1].json == {"model": "upstream-media", "voice": "alloy", "input": "Hello there"}
    assert ledger_charge(raw.headers["x-request-id"]) == 15_000


def test_moderations_are_answered_and_charged_per_request(openai_client, openai_upstream):
    price(request_usd="0.0005")
    serve(openai_upstream)

    raw = openai_client.moderations.with_raw_response.create(model="m-media", input=["one", "two"])

    assert [result.flagged for result in raw.parse().results] == [False, False]
    assert ledger_charge(raw.headers["x-request-id"]) == 500


def test_a_failing_channel_fails_over_and_the_request_is_charged_once(openai_client, openai_upstream, upstream_factory):
    from billing.models import LedgerEntry

    price(image_usd="0.04")
    broken = upstream_factory(name="broken", mode="500")
    serve(broken, name="first", priority=10)
    serve(openai_upstream, name="second", priority=1)

    raw = openai_client.images.with_raw_response.generate(model="m-media", prompt="a fox")

    assert len(broken.requests) == 1 and len(openai_upstream.requests) == 1
    assert ledger_charge(raw.headers["x-request-id"]) == 40_000
    assert LedgerEntry.objects.filter(request_id=raw.headers["x-request-id"]).count() == 1


UNAFFORDABLE = [
    # (prices in USD, call)  alice has 100 USD of Credit
    ({"image_usd": "60"}, lambda c: c.images.generate(model="m-media", prompt="x", n=2)),
    ({"second_usd": "1"}, lambda c: c.audio.transcriptions.create(model="m-media", file=("a.wav", wav_bytes(1), "audio/wav"))),
    ({"request_usd": "150"}, lambda c: c.audio.speech.create(model="m-media", voice="alloy", input="hi")),
    ({"request_usd": "150"}, lambda c: c.moderations.create(model="m-media", input="hi")),
]


@pytest.mark.parametrize(("prices", "call"), UNAFFORDABLE, ids=ALL)
def test_an_unaffordable_request_is_refused_with_402_and_nothing_sent(openai_client, openai_upstream, prices, call):
    price(**prices)
    serve(openai_upstream)

    with pytest.raises(openai.APIStatusError) as caught:
        call(openai_client)

    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_quota"
    assert openai_upstream.requests == []
    nothing_charged()


BAD = [
    ("/v1/images/generations", {"json": {"model": "m-media", "prompt": "x", "n": 0}}, "n"),
    ("/v1/images/generations", {"json": {"model": "m-media"}}, "prompt"),
    ("/v1/audio/speech", {"json": {"model": "m-media", "voice": "alloy", "input": "hi", "response_format": "mp4"}}, "response_format"),
    ("/v1/audio/speech", {"json": {"model": "m-media", "input": "hi"}}, "voice"),
    ("/v1/moderations", {"json": {"model": "m-media", "input": []}}, "input"),
    ("/v1/audio/transcriptions", {"json": {"model": "m-media"}}, None),
    ("/v1/audio/transcriptions", {"data": {"model": "m-media"}, "files": {"other": ("a.txt", b"x")}}, "file"),
    ("/v1/audio/transcriptions", {"data": {"model": "m-media", "temperature": "warm"}, "files": {"file": ("a.wav", b"RIFF")}}, "temperature"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD)
def test_a_bad_body_is_a_400_and_nothing_is_sent(relay, alice, openai_upstream, path, body, param):
    price(request_usd="0.01", image_usd="0.01", second_usd="0.01")
    serve(openai_upstream)

    answer = httpx.post(relay.url + path, headers={"authorization": f"Bearer {alice.key}"}, timeout=30, **body)

    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert openai_upstream.requests == []
    nothing_charged()


def test_a_bad_body_is_a_400_through_the_sdk(openai_client, openai_upstream):
    price(request_usd="0.01")
    serve(openai_upstream)

    with pytest.raises(openai.BadRequestError):
        openai_client.audio.speech.create(model="m-media", voice="alloy", input="")

    assert openai_upstream.requests == []


def test_a_model_priced_only_per_token_is_not_served_free(openai_client, openai_upstream):
    make_price("m-media", "1", "2")
    serve(openai_upstream)

    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.moderations.create(model="m-media", input="hi")

    assert caught.value.status_code == 503 and caught.value.body["code"] == "model_not_priced"
    assert openai_upstream.requests == []
    nothing_charged()


def test_a_channel_that_does_not_declare_the_endpoint_is_not_used(openai_client, openai_upstream):
    price(image_usd="0.04")
    serve(openai_upstream, endpoints=["moderations"])

    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.images.generate(model="m-media", prompt="x")

    assert caught.value.status_code == 503 and caught.value.body["code"] == "no_available_channel"
    assert openai_upstream.requests == []


def test_set_price_takes_the_media_flags(openai_upstream, transactional_db):
    import json

    from django.core.management import call_command

    from billing.models import Price

    serve(openai_upstream)
    out = io.StringIO()
    call_command("set_price", "m-media", "--per-request", "0.01", "--per-image", "0.04", "--per-second", "0.0001", "--json", stdout=out)

    printed = json.loads(out.getvalue())
    assert (printed["request_micros"], printed["image_micros"], printed["second_micros"]) == (10_000, 40_000, 100)
    stored = Price.objects.get(model="m-media")
    assert (stored.request_micros, stored.image_micros, stored.second_micros) == (10_000, 40_000, 100)


def test_set_price_refuses_a_negative_media_price_and_changes_nothing(openai_upstream, transactional_db):
    from django.core.management import CommandError, call_command

    from billing.models import Price

    serve(openai_upstream)
    with pytest.raises(CommandError, match="image price must not be negative"):
        call_command("set_price", "m-media", "--per-image", "-0.04")

    assert not Price.objects.filter(model="m-media").exists()


def test_the_database_refuses_a_negative_media_price(transactional_db):
    from django.db import IntegrityError

    from billing.models import Price

    with pytest.raises(IntegrityError):
        Price.objects.create(model="m-neg", image_micros=-1)


def test_an_idempotent_retry_is_answered_again_and_charged_once(openai_client, openai_upstream):
    from billing.models import LedgerEntry

    price(request_usd="0.015")
    serve(openai_upstream)
    headers = {"Idempotency-Key": "speech-once"}

    first = openai_client.audio.speech.with_raw_response.create(model="m-media", voice="alloy", input="Hello", extra_headers=headers)
    again = openai_client.audio.speech.with_raw_response.create(model="m-media", voice="alloy", input="Hello", extra_headers=headers)

    assert again.headers["idempotent-replayed"] == "true"
    assert again.http_response.content == first.http_response.content == SPEECH_AUDIO
    assert again.headers["content-type"] == "audio/mpeg"
    assert len(openai_upstream.requests) == 1
    settle_background()
    assert LedgerEntry.objects.exclude(idempotency_key__startswith="test:").count() == 1
