"""The request's journey through /v1/chat/completions (see ARCHITECTURE.md):

    admit -> route -> reserve -> send (fail over before the first byte) -> stream -> settle -> record

The web layer (`routing.app`) has authenticated the key and gives us a `Call`; we return a
`Reply` or a `StreamReply`, or raise a `TokenHubError` that the web layer renders.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import orjson
from django.conf import settings

from accounts import limits
from accounts.policy import KeyPolicy
from channels import upstream
from channels.health.observe import AttemptSeen, attempt_observe
from channels.health.state import KEY_OWNED
from channels.keys import session_of
from channels.selection import Plan, describe_for_customer, first_ready_at, keys_ordered, plan_for
from channels.strategies import UnknownMode, mode_for
from channels.table import ModelInfo, Route, table_aget
from common import background
from observability.services import request_log_submit
from providers import tokens
from providers.base import NATIVE_ANTHROPIC, ChatStream, ErrorKind, ProviderError, Target, Timeouts, Usage
from providers.registry import get_adapter

from .directives import NONE as NO_DIRECTIVES
from .directives import Directives, directives_take
from .errors import (
    AuthenticationFailed,
    Forbidden,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    NoAvailableChannel,
    RateLimited,
    RequestTooLarge,
    TokenHubError,
    UpstreamError,
    echo,
)
from .metering import Meter, output_limit_write
from .replies import Reply, StreamReply
from .schemas import ChatRequest, request_check
from .scrub import public_text

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
NO_LIMIT = str(2**31 - 1)  # what x-ratelimit-* report for a unit the key does not limit (docs/protocols.md)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who asked, and for what: made once by the web layer (`routing.app`), or by `step_call`
    for an orchestration step; never changed."""

    request_id: str
    policy: KeyPolicy
    client_ip: str | None
    endpoint: str
    headers: Mapping[str, str]  # the client's headers (lower-case names)
    query: Mapping[str, str]  # the URL's query parameters
    path_params: Mapping[str, str]  # parts of the URL's path the route names
    started: float  # the web layer's perf_counter: when the request arrived
    created_at: datetime
    body_size: int = 0  # bytes of the request body
    parent_request_id: str | None = None  # an orchestration step: the run it belongs to


@dataclass(slots=True)
class Admission:
    """The admission verdict, written by `steer` and `check_rate` (and `candidates_for`'s mode)."""

    directives: Directives = NO_DIRECTIVES  # how the caller steers this request (routing.directives)
    rate_headers: dict[str, str] = field(default_factory=dict)
    mode: str = ""  # routing mode: X-TokenHub-Mode header > key > group > default


@dataclass(slots=True)
class Decision:
    """The route decision, written by `resolve_model`/`name_model` and `candidates_for`."""

    model: str = ""
    plan: Plan | None = None  # scores and the health view it saw
    candidates: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class Attempts:
    """What sending did, appended by `send` alone."""

    made: list[dict] = field(default_factory=list)
    route: Route | None = None  # the route that answered
    key_index: int | None = None  # which of a multi-key channel's keys answered (channels.keys)
    upstream_s: float = 0.0  # time spent waiting on upstreams: not TokenHub's overhead


@dataclass(slots=True)
class Outcome:
    """How it is answered: `is_stream` and `ttft_ms` by this module, `prompt_tokens` by the meter."""

    is_stream: bool = False
    ttft_ms: int | None = None
    prompt_tokens: int | None = None  # the relay's own count, once the meter made it


class Call:
    """One customer request: its identity, and one typed value per stage, each with one owner
    (docs/architecture.md, "The call")."""

    __slots__ = ("identity", "admission", "decision", "attempts", "outcome", "conversation", "_session", "_overhead_ms")

    def __init__(self, identity: Identity, *, admission: Admission | None = None) -> None:
        self.identity = identity
        self.admission = Admission() if admission is None else admission
        self.decision = Decision()
        self.attempts = Attempts()
        self.outcome = Outcome()
        self.conversation: dict | None = None  # the request whose opening names its session (key stickiness)
        self._session: str | None = None
        self._overhead_ms: float | None = None  # fixed once, by `overhead_ms` (see there)

    def session(self) -> str:
        """Which upstream key of a multi-key channel this request sticks to (channels.keys):
        worked out only when a multi-key channel is tried."""
        if self._session is None:
            identity = self.identity
            self._session = session_of(key_id=identity.policy.key_id, request=self.conversation, request_id=identity.request_id)
        return self._session

    def session_continue(self, session: str) -> None:
        """Continue an earlier request's session: a passed-through `previous_response_id` is kept
        upstream under the account of the key that made it (routing.responses)."""
        self._session = session

    @property
    def overhead_ms(self) -> float:
        """TokenHub's own time on this request: from its start to now, less the time spent
        waiting on upstreams. The one place it is measured, for every path (answers, errors,
        streams): the first reading fixes it, so the request log, the metrics and the
        `x-tokenhub-overhead-ms` header all say the same. A whole answer reads it when it is
        recorded (after settlement: that is the relay's time too), a stream when its headers
        go out, a refused request when it is recorded or its error is rendered."""
        if self._overhead_ms is None:
            self._overhead_ms = (time.perf_counter() - self.identity.started - self.attempts.upstream_s) * 1000.0
        return self._overhead_ms

    def headers(self) -> dict[str, str]:
        return {
            "x-request-id": self.identity.request_id,
            "x-tokenhub-overhead-ms": f"{self.overhead_ms:.2f}",
            **self.limit_headers(),
        }

    def limit_headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* family on every answer to a known key: this request's verdicts,
        and for a unit the key does not limit, NO_LIMIT as limit and remaining."""
        headers = dict(self.admission.rate_headers)
        policy = self.identity.policy
        for unit, limit in (("requests", policy.rpm), ("tokens", policy.tpm)):
            if not limit and f"x-ratelimit-limit-{unit}" not in headers:
                headers.update(
                    {f"x-ratelimit-limit-{unit}": NO_LIMIT, f"x-ratelimit-remaining-{unit}": NO_LIMIT, f"x-ratelimit-reset-{unit}": "0s"}
                )
        return headers


def identity_make(
    *, request_id: str, policy: KeyPolicy, client_ip: str | None, endpoint: str, headers=None, query=None, path_params=None,
    started: float | None = None, body_size: int = 0, parent_request_id: str | None = None,
) -> Identity:
    return Identity(
        request_id=request_id, policy=policy, client_ip=client_ip, endpoint=endpoint, headers=headers or {}, query=query or {},
        path_params=path_params or {}, started=time.perf_counter() if started is None else started,
        created_at=datetime.now(timezone.utc), body_size=body_size, parent_request_id=parent_request_id,
    )


def step_call(parent: Call, request_id: str, *, max_cost_micros: int | None) -> Call:
    """An orchestration step's own call: the run's key and client, the run's directives with what
    is left of its cost ceiling."""
    identity = parent.identity
    return Call(
        identity_make(
            request_id=request_id, policy=identity.policy, client_ip=identity.client_ip, endpoint="chat.completions",
            parent_request_id=identity.request_id,
        ),
        admission=Admission(directives=replace(parent.admission.directives, max_cost_micros=max_cost_micros)),
    )


# --- admission -----------------------------------------------------------------------------


def steer(call: Call, request: dict | None) -> None:
    """Take the caller's directives (headers, or an @tokenhub line removed from `request`)."""
    identity = call.identity
    call.admission.directives = directives_take(headers=identity.headers, request=request, is_allowed=identity.policy.allows_directives)


def check_key(policy: KeyPolicy | None, client_ip: str | None) -> KeyPolicy:
    if policy is None:
        raise AuthenticationFailed("Incorrect API key provided. You can find your API keys in the TokenHub portal at /keys/.")
    if policy.is_revoked:
        raise AuthenticationFailed("This API key has been revoked.")
    if policy.expires_at is not None and policy.expires_at <= datetime.now(timezone.utc):
        raise AuthenticationFailed(f"This API key expired at {policy.expires_at.isoformat(timespec='seconds')}.")
    if not policy.is_tenant_active:
        raise AuthenticationFailed("The account this API key belongs to is suspended.")
    if not policy.allows_ip(client_ip):
        raise Forbidden(f"This API key may not be used from {client_ip}.", code="ip_not_allowed")
    return policy


async def check_rate(call: Call) -> None:
    """The key's RPM (counted now) and TPM (tokens counted after each request), with OpenAI's
    x-ratelimit-* headers on the answer and Retry-After on a refusal."""
    policy = call.identity.policy
    if policy.rpm:
        _admit(call, await limits.rpm_hit(key_id=policy.key_id, rpm=policy.rpm), "requests")
    if policy.tpm:
        _admit(call, await limits.tpm_check(key_id=policy.key_id, tpm=policy.tpm), "tokens")


def _admit(call: Call, verdict: limits.Verdict, unit: str) -> None:
    rate_headers = call.admission.rate_headers
    rate_headers.update(
        {
            f"x-ratelimit-limit-{unit}": str(verdict.limit),
            f"x-ratelimit-remaining-{unit}": str(verdict.remaining),
            f"x-ratelimit-reset-{unit}": f"{verdict.reset_s:.0f}s",
        }
    )
    if not verdict.allowed:
        raise RateLimited(
            f"Rate limit reached: this key allows {verdict.limit} {unit} per minute. Try again in {verdict.reset_s:.0f}s.",
            headers={"retry-after": str(max(1, round(verdict.reset_s))), **rate_headers},
        )


def parse_body(body: bytes) -> dict:
    if len(body) > settings.REQUEST_MAX_BYTES:
        raise RequestTooLarge(f"Request body is {len(body)} bytes; the limit is {settings.REQUEST_MAX_BYTES}.")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(request, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if NATIVE_ANTHROPIC in request:
        # the relay's own slot for an Anthropic client's body (routing.inbound_anthropic): from a
        # client it would be sent upstream in place of the request that was counted and held
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {NATIVE_ANTHROPIC}", param=NATIVE_ANTHROPIC, code="unsupported_parameter"
        )
    return request


def validate_chat(request: dict) -> None:
    """Every field checked before anything is held or sent (routing.schemas)."""
    request_check(ChatRequest, request)


def resolve_model(call: Call, table, name: str) -> ModelInfo:
    info = model_check(call, table, name)
    call.decision.model = info.public_id
    return info


def model_check(call: Call, table, name: str, *, param: str = "model") -> ModelInfo:
    """The model `name` (an id or an alias) names, when this key may use it: else 404
    `model_not_found` or 403 `model_not_allowed`, with `param` the field that named it."""
    info = table.resolve(name)
    if info is None:
        raise ModelNotFound(f"The model '{echo(name)}' does not exist or you do not have access to it.", param=param)
    policy = call.identity.policy
    if not (policy.allows_model(info.public_id) or policy.allows_model(name)):
        raise ModelNotAllowed(f"This API key is not allowed to use the model '{info.public_id}'.", param=param)
    return info


def name_model(call: Call, name: str) -> None:
    """The model the request log names, for a request no table entry answers (orchestration)."""
    call.decision.model = name


def stream_take(call: Call, request: dict) -> bool:
    """Whether the answer streams, as the request asks."""
    call.outcome.is_stream = is_stream = bool(request.get("stream"))
    return is_stream


# --- routing and sending ---------------------------------------------------------------------


async def candidates_for(call: Call, table, info: ModelInfo) -> list[Route]:
    routes = table.routes.get(info.public_id, ())
    policy = call.identity.policy
    group = policy.tenant_group
    admission, decision = call.admission, call.decision
    try:
        admission.mode = await mode_for(header=admission.directives.mode, key_mode=policy.mode, group=group)
    except UnknownMode as error:
        raise InvalidRequest(str(error), param="X-TokenHub-Mode", code="invalid_mode") from None
    decision.plan = plan = await plan_for(routes, group=group, model=info.public_id, mode=admission.mode)
    ordered, skipped = plan.ordered, plan.skipped
    decision.candidates = plan.explain()
    if not ordered:
        # The full story (channel names, notes) is in the request log; the customer reads
        # their own group's candidates in public terms, and when to come back.
        explained = describe_for_customer(skipped)
        if not explained:
            raise NoAvailableChannel(f"No channel serves the model '{info.public_id}'.")
        ready_at = first_ready_at(skipped)
        headers = {"retry-after": str(max(1, math.ceil(ready_at - time.time())))} if ready_at is not None else None
        raise NoAvailableChannel(f"No available channel for model '{info.public_id}': {explained}.", headers=headers)
    return _steered(call, ordered, info)


def _steered(call: Call, ordered: list[Route], info: ModelInfo) -> list[Route]:
    """The plan's order with the caller's brand directives applied (routing.directives)."""
    directives = call.admission.directives
    if directives.exclude_brands:
        kept = [r for r in ordered if r.brand.lower() not in directives.exclude_brands]
        if not kept:
            raise NoAvailableChannel(
                f"No available channel for model '{info.public_id}': every route is of an excluded brand "
                f"({', '.join(directives.exclude_brands)})."
            )
        ordered = kept
    if directives.prefer_brands:
        rank = {brand: n for n, brand in enumerate(directives.prefer_brands)}
        # stable: preferred brands first (in the order given), each keeping the mode's order
        ordered = sorted(ordered, key=lambda r: rank.get(r.brand.lower(), len(rank)))
    return ordered


def _client_error(error: ProviderError) -> TokenHubError:
    code = "context_length_exceeded" if error.kind is ErrorKind.CONTEXT_OVERFLOW else "upstream_bad_request"
    return InvalidRequest(f"The upstream refused the request: {public_text(error.message)}", code=code)


def chat_operation(call: Call, request: dict):
    """What one attempt does for chat: a whole answer, or an open stream."""

    async def operation(adapter, target: Target, timeouts: Timeouts):
        if call.outcome.is_stream:
            return await adapter.open_stream(upstream.client(), target, request, timeouts)
        return await adapter.chat(upstream.client(), target, request, timeouts)

    return operation


async def send(call: Call, routes: list[Route], meter: Meter, operation):
    """Try routes in order until one answers; returns (route, what `operation` returned).
    `operation(adapter, target, timeouts)` makes one attempt and raises ProviderError.
    Whatever ends it without an answer releases the request's hold: nothing was delivered."""
    try:
        return await _try_routes(call, routes, meter, operation)
    except asyncio.CancelledError:
        background.spawn(meter.release())  # cancelled: this task may not await any more
        raise
    except BaseException:
        await meter.release()
        raise


async def _try_routes(call: Call, routes: list[Route], meter: Meter, operation):
    deadline = call.identity.started + settings.ROUTING_DEADLINE_S
    max_attempts = settings.ROUTING_MAX_ATTEMPTS
    failures: list[str] = []  # the customer's view: numbered attempts, no channel names
    rate_limited_waits: list[float] = []  # seconds each rate-limited attempt asked us to wait
    tried = 0
    plan = call.decision.plan
    health = plan.health if plan is not None else None
    attempts = call.attempts
    for route in routes:
        if tried >= max_attempts:
            break
        if deadline - time.perf_counter() <= 0:
            failures.append("deadline reached")
            break
        refusal = await meter.reserve(route)
        if refusal:
            attempts.made.append({"channel": route.channel_name, "outcome": "skipped", "error_class": "insufficient_quota"})
            failures.append(f"candidate {len(attempts.made)}: {refusal}")
            continue
        # A multi-key channel: its ready keys, this session's first (channels.keys). A key that
        # is refused for its own sake (401/403, quota, 429) hands over to the next ready key of
        # the same channel before the request fails over to another channel.
        key_order: list[int | None] = keys_ordered(route, health, call.session()) if route.is_multikey else [None]
        out_of_time = False
        for key_index in key_order:
            if tried >= max_attempts:
                break
            remaining_s = deadline - time.perf_counter()
            if remaining_s <= 0:
                out_of_time = True
                break
            tried += 1
            answered, outcome, error, cooldown = await _attempt_once(call, route, key_index, remaining_s, operation)
            if answered:
                attempts.route, attempts.key_index = route, key_index
                return route, outcome
            if error is None:  # an unexpected fault of ours or the adapter's: not the key's
                failures.append(f"attempt {tried}: unexpected error")
                break
            failures.append(f"attempt {tried}: {_reason(error)}")
            if error.kind is ErrorKind.RATE_LIMITED:
                rate_limited_waits.append(error.retry_after_s or (max(0.0, cooldown.until - time.time()) if cooldown else 1.0))
            if key_index is None or error.kind not in KEY_OWNED:
                break
        if out_of_time:
            failures.append("deadline reached")
            break
    if tried == 0 and failures:
        raise meter.refusal_error()
    if tried and len(rate_limited_waits) == tried:
        # Every upstream said "too many requests": the client should come back, not give up.
        wait_s = max(1, math.ceil(min(rate_limited_waits)))
        raise RateLimited(
            f"Every upstream for this model is rate limited right now. Try again in {wait_s}s.",
            headers={"retry-after": str(wait_s)},
        )
    raise UpstreamError(f"All {tried} upstream attempt(s) failed: " + "; ".join(failures) + ".")


async def _attempt_once(call: Call, route: Route, key_index: int | None, remaining_s: float, operation):
    """One attempt on `route` (with its key at `key_index` on a multi-key channel), observed.
    Returns (answered, outcome, error, cooldown): (True, outcome, None, None) on an answer,
    (False, None, error, its cooldown) on a retryable upstream failure, (False, None, None, None)
    on an unexpected fault; raises the client's error on a non-retryable one."""
    adapter = get_adapter(route.provider_type)
    api_key = route.api_keys[key_index] if key_index is not None else route.api_key
    target = Target(route.base_url, route.upstream_model, api_key, route.options, route.brand)
    timeouts = route.timeouts
    if timeouts.first_byte_s > remaining_s:
        timeouts = Timeouts(min(timeouts.connect_s, remaining_s), remaining_s, timeouts.idle_s)
    budget_ms = call.admission.directives.latency_budget_ms
    if budget_ms is not None:
        budget_s = budget_ms / 1000
        timeouts = Timeouts(min(timeouts.connect_s, budget_s), min(timeouts.first_byte_s, budget_s), timeouts.idle_s)
    attempts = call.attempts
    began = time.perf_counter()
    try:
        outcome = await operation(adapter, target, timeouts)
    except ProviderError as error:
        attempts.upstream_s += time.perf_counter() - began
        attempts.made.append(_attempt(route, began, error.kind.value, error.status, key_index))
        cooldown = await _observe(call, route, error, attempts.made[-1]["latency_ms"], key_index)
        if not error.kind.is_retryable:
            raise _client_error(error) from None
        log.info("channel %s failed (%s); cooling until %.0f", route.channel_name, error.kind.value, cooldown.until if cooldown else 0)
        return False, None, error, cooldown
    except Exception:
        attempts.upstream_s += time.perf_counter() - began
        log.exception("adapter %s raised an unexpected error", route.provider_type)
        attempts.made.append(_attempt(route, began, "internal", None, key_index))
        await _observe(call, route, ProviderError(ErrorKind.TRANSIENT, "unexpected error"), 0, None)
        return False, None, None, None
    attempts.upstream_s += time.perf_counter() - began
    attempts.made.append(_attempt(route, began, "ok", 200, key_index))
    await _observe(call, route, None, attempts.made[-1]["latency_ms"], key_index)
    return True, outcome, None, None


def _observe(call: Call, route: Route, error: ProviderError | None, latency_ms: float, key_index: int | None):
    """Tell `channels` of one attempt, in plain values (it never imports routing)."""
    plan = call.decision.plan
    seen = AttemptSeen(
        request_id=call.identity.request_id, model=call.decision.model, mode=call.admission.mode,
        attempt=len(call.attempts.made), health=plan.health if plan is not None else None,
    )
    return attempt_observe(seen=seen, route=route, error=error, latency_ms=latency_ms, key_index=key_index)


def _reason(error: ProviderError) -> str:
    status = f" ({error.status})" if error.status else ""
    return f"{error.kind.value.replace('_', ' ')}{status}"


def _attempt(route: Route, began: float, outcome: str, status: int | None, key_index: int | None = None) -> dict:
    attempt = {
        "channel": route.channel_name,
        "outcome": outcome,
        "status": status,
        "latency_ms": round((time.perf_counter() - began) * 1000),
    }
    if key_index is not None:
        attempt["key"] = route.key_position(key_index)  # "2/3": which of the channel's keys, never the key
    return attempt


# --- the endpoint ------------------------------------------------------------------------------


async def chat(call: Call, request: dict) -> Reply | StreamReply:
    """An OpenAI chat request (already parsed; other protocols translate into this)."""
    info, routes = await admit_chat(call, request)
    return await generate(call, request, info, routes, chat_operation(call, request), text_of=_completion_text)


async def admit_chat(call: Call, request: dict) -> tuple[ModelInfo, list[Route]]:
    """A chat request checked, steered, admitted and routed: its model and the routes to try."""
    validate_chat(request)
    if call.identity.parent_request_id is None:  # an orchestration step inherits its run's directives
        steer(call, request)
    table = await table_aget()
    info = resolve_model(call, table, request["model"])
    await check_rate(call)
    stream_take(call, request)
    return info, await candidates_for(call, table, info)


async def generate(
    call: Call, request: dict, info: ModelInfo, routes: list[Route], operation, *, text_of, limit_field: str = "max_completion_tokens",
    context_tokens: int = 0,
) -> Reply | StreamReply:
    """Price, send with failover, then answer whole or as a stream; settle and record.
    Chat and legacy completions share it; `text_of(body)` reads a whole answer's text, for
    counting its tokens when the upstream reported no usage. The output limit the hold covers
    is written into the request (`limit_field`) before anything is sent. `context_tokens`:
    input the upstream holds from earlier turns (`Meter.context_tokens`)."""
    call.conversation = request
    meter = Meter(call, info, request, context_tokens=context_tokens)
    await meter.prepare()
    output_limit_write(request, meter.output_limit, field=limit_field)
    try:
        _route, outcome = await send(call, routes, meter, operation)
    except TokenHubError as error:
        record(call, status=error.status, error=error, meter=meter)
        raise
    if not call.outcome.is_stream:
        await settle_and_record(
            call, meter, request, reported=outcome.usage, delivered_text=lambda: text_of(outcome.body), is_cut=False,
            status=200, finish_reason=outcome.finish_reason,
        )
        return Reply(200, outcome.body, call.headers())
    call.outcome.ttft_ms = round((time.perf_counter() - call.identity.started) * 1000)
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    return StreamReply(relay_stream(call, outcome, request, include_usage, meter), call.headers())


@dataclass(slots=True)
class _Tally:
    """What a stream delivered, for its settlement."""

    texts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    error: ProviderError | None = None  # the upstream broke the stream after its first byte


async def relay_stream(call: Call, stream: ChatStream, request: dict, include_usage: bool, meter: Meter):
    tally = _Tally()
    renew_s = settings.HOLD_LEASE_RENEW_S
    meter.lease_due = time.monotonic() + renew_s
    try:
        async for chunk in stream:
            if chunk.data and time.monotonic() >= meter.lease_due:
                meter.lease_due = time.monotonic() + renew_s
                background.spawn(meter.renew())  # still live: reconciliation must leave its hold
            if chunk.usage is not None:
                tally.usage = chunk.usage
            if chunk.finish_reason:
                tally.finish_reason = chunk.finish_reason
            if chunk.text:
                tally.texts.append(chunk.text)
            if chunk.is_usage_only and not include_usage:
                continue
            yield chunk.data
        if include_usage and tally.usage is None:
            yield usage_chunk(call, estimate_usage(request, "".join(tally.texts)))
        yield DONE
    except ProviderError as error:
        tally.error = error
        yield b"data: " + UpstreamError(f"The upstream stream broke: {public_text(error.message)}").render_openai() + b"\n\n"
    finally:
        # The client may be gone and this task cancelled: finish in a task of its own.
        background.spawn(_finish_stream(call, stream, request, tally, meter))


async def _finish_stream(call: Call, stream: ChatStream, request: dict, tally: _Tally, meter: Meter) -> None:
    try:
        await stream.aclose()
    except Exception:
        log.debug("closing an upstream stream failed", exc_info=True)
    status, error_text = 200, ""
    if tally.error is not None:
        status, error_text = 502, f"The upstream stream broke: {tally.error.message}"
        attempts = call.attempts
        if attempts.route is not None:  # a channel that cuts streams is as unhealthy as one that refuses them
            latency_ms = round((time.perf_counter() - call.identity.started) * 1000)
            try:
                await _observe(call, attempts.route, tally.error, latency_ms, attempts.key_index)
            except Exception:
                log.exception("request %s: observing the cut stream failed", call.identity.request_id)
    elif tally.finish_reason is None:
        status, error_text = 499, "client went away before the stream ended"
    # cut or abandoned: a usage report seen early does not cover the text delivered after it
    await settle_and_record(
        call, meter, request, reported=tally.usage, delivered_text=lambda: "".join(tally.texts), is_cut=status != 200,
        status=status, finish_reason=tally.finish_reason, error_text=error_text,
    )


async def settle_and_record(
    call: Call, meter: Meter, request: dict, *, reported: Usage | None, delivered_text, is_cut: bool, status: int,
    finish_reason: str | None, error_text: str = "",
) -> None:
    """Bill what was delivered (bounded by what could have been) and log the request. Never
    raises: the answer has been (or is being) delivered; a fault here is logged, and a hold it
    leaves open is ended by reconciliation."""
    usage: Usage | None = None
    is_estimated = False
    try:
        counted = estimate_usage(request, delivered_text(), context_tokens=meter.context_tokens) if reported is None or is_cut else None
        usage, is_estimated = meter.billable(reported, counted or reported, is_cut=is_cut)
        await meter.settle(usage, is_estimated=is_estimated)
    except Exception:
        log.exception("request %s: settling failed; its hold is left to reconciliation", call.identity.request_id)
    try:
        record(call, status=status, usage=usage, is_estimated=is_estimated, finish_reason=finish_reason, error_text=error_text, meter=meter)
    except Exception:
        log.exception("request %s: recording failed", call.identity.request_id)


def usage_chunk(call: Call, usage: Usage) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": call.identity.request_id,
                "object": "chat.completion.chunk",
                "created": int(call.identity.created_at.timestamp()),
                "model": call.decision.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
            }
        )
        + b"\n\n"
    )


def estimate_usage(request: dict, completion_text: str, *, context_tokens: int = 0) -> Usage:
    return Usage(
        prompt_tokens=tokens.estimate_request_prompt_tokens(request) + context_tokens,
        completion_tokens=tokens.count_text(completion_text) if completion_text else 0,
    )


def _completion_text(body: bytes) -> str:
    try:
        choices = orjson.loads(body).get("choices") or []
        return "".join((c.get("message") or {}).get("content") or "" for c in choices)
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def record(
    call: Call,
    *,
    status: int,
    meter: Meter,
    usage: Usage | None = None,
    is_estimated: bool = False,
    finish_reason: str | None = None,
    error: TokenHubError | None = None,
    error_text: str = "",
) -> None:
    identity, decision, attempts, outcome = call.identity, call.decision, call.attempts, call.outcome
    policy = identity.policy
    route = attempts.route
    if usage is not None and policy.tpm:
        background.spawn(limits.tpm_add(key_id=policy.key_id, tokens=usage.total_tokens))
    request_log_submit(
        entry={
            "request_id": identity.request_id,
            "tenant_id": policy.tenant_id,
            "key_id": policy.key_id,
            "endpoint": identity.endpoint,
            "model": decision.model,
            "channel_id": route.channel_id if route else None,
            "channel_name": route.channel_name if route else "",
            "upstream_model": route.upstream_model if route else "",
            "attempts": attempts.made,
            "candidates": decision.candidates,
            "status": status,
            "error_class": error.code if error else ("upstream_error" if status == 502 else ""),
            "error_message": (error.message if error else error_text)[:500],
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "is_usage_estimated": is_estimated,
            "cost_micros": meter.charged_micros,
            "upstream_discrepancy": meter.discrepancy[:300],
            "unbilled_micros": meter.unbilled_micros,
            "balance_kind": meter.balance_kind,
            "currency": meter.currency,
            "latency_ms": round((time.perf_counter() - identity.started) * 1000),
            "ttft_ms": outcome.ttft_ms,
            "overhead_ms": round(call.overhead_ms, 3),
            "is_stream": outcome.is_stream,
            "finish_reason": finish_reason or "",
            "directives": call.admission.directives.given,
            "parent_request_id": identity.parent_request_id or "",
            "created_at": identity.created_at,
        }
    )
