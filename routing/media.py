"""The media endpoints: `POST /v1/images/generations`, `/v1/audio/transcriptions` (a multipart
upload), `/v1/audio/speech` (audio bytes back) and `/v1/moderations`.

They take the journey's pieces (admission, routing, failover through `send`, `record`) as
`routing.embeddings` does, with their own meter. Only routes of OpenAI-compatible channels
that declare the endpoint in their options (`{"endpoints": ["images.generations", ...]}`) are
tried. Prices come from `set_price --per-request/--per-image/--per-second` (docs/billing.md):

    endpoint              hold (worst case)                          charge
    images.generations    request + n x image                        request + images returned (at most n) x image
    audio.transcriptions  request + TRANSCRIPTION_MAX_SECONDS x second request + seconds x second
    audio.speech          request                                    request
    moderations           request                                    request

Seconds transcribed: the upstream's report (`usage.seconds`, or `duration`), bounded by the
upload's own length when it is a WAV file we can measure, and by TRANSCRIPTION_MAX_SECONDS;
with no report, the measured length, else the maximum (never silently free). A model whose
price gives such a request no cost, and is not marked free, is refused (503 model_not_priced)
before anything is held or sent.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import logging
import math
import wave
from dataclasses import dataclass

from django.conf import settings

from billing.pricing import media_list_cost_micros
from billing.ratecard import ratecard_aget
from channels import upstream
from channels.table import Route, table_aget

from .errors import InvalidRequest, ModelNotPriced, NoAvailableChannel, TokenHubError, echo
from .journey import Call, candidates_for, check_rate, parse_body, record, resolve_model, send, steer
from .metering import Meter
from .replies import Reply
from .schemas import ImagesRequest, ModerationsRequest, SpeechRequest, TranscriptionsRequest, request_check

__all__ = ["images_generations", "moderations", "speech", "transcriptions", "serves_endpoint"]

log = logging.getLogger(__name__)

OPTION = "endpoints"  # the channel option listing the media endpoints it serves


@dataclass(frozen=True, slots=True)
class MediaUsage:
    images: int = 0
    seconds: int = 0


class MediaMeter(Meter):
    """A Meter priced per request, image and second instead of per token."""

    def __init__(self, call: Call, info, *, worst: MediaUsage) -> None:
        super().__init__(call, info, {}, prompt_tokens=0, max_output_tokens=0)
        self.worst = worst

    async def prepare(self) -> None:
        self._card = card = await ratecard_aget()
        price = card.prices.get(self.info.public_id)
        if price is None or (
            not price.is_free and media_list_cost_micros(price, images=self.worst.images, seconds=self.worst.seconds) <= 0
        ):
            raise ModelNotPriced(
                f"The model '{self.info.public_id}' has no per-request, per-image or per-second price for "
                f"{self.call.identity.endpoint}, so TokenHub will not serve it. "
                "An operator must set one (manage.py set_price) or mark it free."
            )
        self.price = price

    def _list_micros(self, usage: MediaUsage) -> int:
        return media_list_cost_micros(self.price, images=usage.images, seconds=usage.seconds)

    def _worst_usage(self) -> MediaUsage:
        return self.worst

    def _floor_usage(self) -> MediaUsage:
        return MediaUsage()

    def _note(self, usage: MediaUsage, is_estimated: bool) -> str:
        return f"{self.info.public_id}: {self.call.identity.endpoint}, {usage.images} image(s), {usage.seconds} s" + (
            " (counted)" if is_estimated else ""
        )


def serves_endpoint(route: Route, endpoint: str) -> bool:
    declared = route.options.get(OPTION) if isinstance(route.options, dict) else None
    return route.provider_type == "openai" and isinstance(declared, list) and endpoint in declared


async def _admit(call: Call, model: str, worst: MediaUsage) -> tuple[list[Route], MediaMeter]:
    steer(call, None)
    table = await table_aget()
    info = resolve_model(call, table, model)
    await check_rate(call)
    routes = [route for route in await candidates_for(call, table, info) if serves_endpoint(route, call.identity.endpoint)]
    if not routes:
        raise NoAvailableChannel(f"No channel serving '{info.public_id}' answers {call.identity.endpoint}.")
    meter = MediaMeter(call, info, worst=worst)
    await meter.prepare()
    return routes, meter


async def _run(call: Call, routes: list[Route], meter: MediaMeter, operation):
    try:
        return (await send(call, routes, meter, operation))[1]
    except TokenHubError as error:
        record(call, status=error.status, error=error, meter=meter)
        raise


async def _settle(call: Call, meter: MediaMeter, usage: MediaUsage, *, is_estimated: bool = False) -> None:
    """Charge once and log; never raises (the answer is ready): a fault leaves the hold to reconciliation."""
    try:
        await meter.settle(usage, is_estimated=is_estimated)
    except Exception:
        log.exception("request %s: settling failed; its hold is left to reconciliation", call.identity.request_id)
    try:
        record(call, status=200, meter=meter, is_estimated=is_estimated)
    except Exception:
        log.exception("request %s: recording failed", call.identity.request_id)


async def images_generations(call: Call, body: bytes) -> Reply:
    request = parse_body(body)
    request_check(ImagesRequest, request)
    n = request.get("n") or 1
    routes, meter = await _admit(call, request["model"], MediaUsage(images=n))

    async def operation(adapter, target, timeouts):
        return await adapter.media_json(upstream.client(), target, "images/generations", request, timeouts)

    result = await _run(call, routes, meter, operation)
    data = result.answer.get("data") if result.answer else None
    images = min(len(data), n) if isinstance(data, list) else 0
    await _settle(call, meter, MediaUsage(images=images))
    return Reply(200, result.body, call.headers())


async def moderations(call: Call, body: bytes) -> Reply:
    request = parse_body(body)
    request_check(ModerationsRequest, request)
    routes, meter = await _admit(call, request["model"], MediaUsage())

    async def operation(adapter, target, timeouts):
        return await adapter.media_json(upstream.client(), target, "moderations", request, timeouts)

    result = await _run(call, routes, meter, operation)
    await _settle(call, meter, MediaUsage())
    return Reply(200, result.body, call.headers())


async def speech(call: Call, body: bytes) -> Reply:
    request = parse_body(body)
    request_check(SpeechRequest, request)
    routes, meter = await _admit(call, request["model"], MediaUsage())

    async def operation(adapter, target, timeouts):
        return await adapter.speech(upstream.client(), target, request, timeouts)

    result = await _run(call, routes, meter, operation)
    await _settle(call, meter, MediaUsage())
    return Reply(200, result.body, call.headers(), media_type=result.media_type)


async def transcriptions(call: Call, body: bytes) -> Reply:
    fields, file = form_parse(call.identity.headers.get("content-type", ""), body)
    request_check(TranscriptionsRequest, _typed(fields))
    most_s = settings.TRANSCRIPTION_MAX_SECONDS
    measured_s = wav_seconds(file[1])
    if measured_s is not None and measured_s > most_s:
        raise InvalidRequest(f"The audio is {measured_s} s long; the limit is {most_s} s.", param="file", code="audio_too_long")
    routes, meter = await _admit(call, dict(fields)["model"], MediaUsage(seconds=most_s))

    async def operation(adapter, target, timeouts):
        return await adapter.transcriptions(upstream.client(), target, fields, file, timeouts)

    result = await _run(call, routes, meter, operation)
    reported_s = _reported_seconds(result.answer)
    seconds = reported_s if reported_s is not None else (measured_s if measured_s is not None else most_s)
    seconds = min(seconds, measured_s if measured_s is not None else most_s, most_s)
    await _settle(call, meter, MediaUsage(seconds=seconds), is_estimated=reported_s is None)
    return Reply(200, result.body, call.headers(), media_type=result.media_type)


# --- the upload ------------------------------------------------------------------------------------


def form_parse(content_type: str, body: bytes) -> tuple[list[tuple[str, str]], tuple[str, bytes, str]]:
    """(text fields in order, (file name, bytes, type)) of a multipart/form-data body; a 400
    for anything else. Parsed with the standard library's MIME parser."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("This endpoint takes a multipart/form-data upload with a 'file' part.", code="invalid_content_type")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise InvalidRequest("The multipart body could not be read.", code="invalid_multipart")
    fields: list[tuple[str, str]] = []
    file: tuple[str, bytes, str] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            file = (part.get_filename() or "audio", payload, part.get_content_type())
        else:
            try:
                fields.append((name, payload.decode("utf-8")))
            except UnicodeDecodeError:
                raise InvalidRequest(f"Invalid value for '{echo(name)}': not UTF-8 text.", param=name, code="invalid_value") from None
    if file is None or not file[1]:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    return fields, file


def _typed(fields: list[tuple[str, str]]) -> dict:
    """The form as the schema reads it: numbers that arrive as text made numbers when they are."""
    typed: dict = dict(fields)
    if "temperature" in typed:
        try:
            typed["temperature"] = float(typed["temperature"])
        except ValueError:
            pass  # left as text: the schema names it
    return typed


def wav_seconds(data: bytes) -> int | None:
    """The length of a WAV upload in whole seconds (rounded up), or None for other formats."""
    try:
        with wave.open(io.BytesIO(data)) as audio:
            rate = audio.getframerate()
            return math.ceil(audio.getnframes() / rate) if rate > 0 else None
    except (wave.Error, EOFError, ValueError):
        return None


def _reported_seconds(answer: dict | None) -> int | None:
    if not answer:
        return None
    usage = answer.get("usage")
    value = usage.get("seconds") if isinstance(usage, dict) and usage.get("type") == "duration" else answer.get("duration")
    if type(value) in (int, float) and math.isfinite(value) and value >= 0:
        return math.ceil(value)
    return None
