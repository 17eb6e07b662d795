"""Several models on one question, behind reserved model names on /v1/chat/completions:

    tokenhub/vote         each of `models` answers (in parallel); `judge` picks or merges the
                          best and says why
    tokenhub/refine       models[0] drafts; then `rounds` times models[1] (or models[0])
                          critiques and models[0] rewrites
    tokenhub/adversarial  models[0] answers; then `rounds` times models[1] attacks the answer
                          and models[0] defends or corrects it

Extra body fields: `models` (public model ids; default: the first three the key may use),
`judge` (vote; default models[0]) and `rounds` (1-5; refine 2, adversarial 1 by default). A
model named there is checked as a plain request's `model` (404 unknown, 403 not allowed).
Every step is a sub-call that goes the whole journey (admission, routing and failover, its own
hold and charge, its request log with `parent_request_id`), so the ledger shows each one. The
answer is an ordinary chat.completion (streamed when asked: the final text as chunks once the
run is done), `usage` is the sum of every step's, and `tokenhub.steps` lists them.

The run has a cost ceiling when the caller gives `max_cost` (directive): before anything is
sent, the worst case of every planned step (prompt plus each step's output limit, at list price
and the group's ratio) must fit, else 402; each step then holds at most what is left. It also
has a deadline (ORCHESTRATION_DEADLINE_S). A failing model in a vote is left out and named in
the judge's brief; a failing step in refine/adversarial ends the run with the best answer so far.
A run where nothing answered is 502 `upstream_error`, unless no failed step reached an upstream
and all were refused for one reason (same status and code: insufficient_quota, a key's cap,
model_not_priced, no_available_channel, rate_limit_exceeded): then the run is refused with that
error, its message giving each model's reason, as a plain request would be (`_nothing_answered`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from django.conf import settings

from billing.pricing import list_cost_micros
from billing.ratecard import ratecard_aget
from channels.table import table_aget
from providers import tokens
from providers.base import Usage
from providers.translate.common import usage_to_openai

from .errors import InsufficientQuota, InvalidRequest, ModelNotFound, TokenHubError, UpstreamError, echo
from .journey import Call, chat, model_check, name_model, parse_body, record, steer, step_call, validate_chat
from .metering import Meter
from .replies import Reply, StreamReply

MODES = ("tokenhub/vote", "tokenhub/refine", "tokenhub/adversarial")
MAX_ROUNDS = 5
MAX_MODELS = 8
DEFAULT_MODELS = 3


@dataclass(slots=True)
class Step:
    role: str  # answer, judge, draft, critique, rewrite, attack, defense
    model: str
    request_id: str
    status: int = 0
    text: str = ""
    usage: Usage | None = None
    error: str = ""
    refusal: TokenHubError | None = None  # why it failed when nothing reached an upstream

    def as_dict(self) -> dict:
        return {
            "role": self.role, "model": self.model, "request_id": self.request_id, "status": self.status,
            "usage": usage_to_openai(self.usage) if self.usage else None, **({"error": self.error} if self.error else {}),
        }


def is_orchestration(model: object) -> bool:
    return isinstance(model, str) and model.startswith("tokenhub/")


async def chat_completions(call: Call, body: bytes) -> Reply | StreamReply:
    """POST /v1/chat/completions: an orchestration model runs here, any other goes the journey."""
    request = parse_body(body)
    if not is_orchestration(request.get("model")):
        return await chat(call, request)
    validate_chat(request)
    steer(call, request)
    return await orchestrate(call, request)


class Run:
    def __init__(self, call: Call, request: dict, *, models: list[str], judge: str, rounds: int) -> None:
        self.call = call
        self.request = request
        self.models = models
        self.judge = judge
        self.rounds = rounds
        self.steps: list[Step] = []
        self.step_max_tokens = request.get("max_tokens") or request.get("max_completion_tokens") or settings.ORCHESTRATION_STEP_MAX_TOKENS
        self.spent_micros = 0  # charged so far, micro-USD at list price x group ratio (for the ceiling)

    # --- one step ----------------------------------------------------------------------------

    async def ask(self, role: str, model: str, messages: list[dict]) -> Step:
        number = len(self.steps) + 1
        step = Step(role, model, f"{self.call.identity.request_id}-{number}")
        self.steps.append(step)
        ceiling = self.call.admission.directives.max_cost_micros
        sub = step_call(self.call, step.request_id, max_cost_micros=None if ceiling is None else max(1, ceiling - self.spent_micros))
        body = {
            "model": model, "messages": messages, "max_tokens": self.step_max_tokens,
            **{k: self.request[k] for k in ("temperature", "top_p") if k in self.request},
        }
        try:
            reply = await chat(sub, body)
        except TokenHubError as error:
            step.status, step.error = error.status, error.message
            if all(a.get("outcome") == "skipped" for a in sub.attempts.made):  # refused here, before any upstream
                step.refusal = error
            return step
        completion = orjson.loads(reply.body)
        choice = (completion.get("choices") or [{}])[0]
        step.status = 200
        step.text = (choice.get("message") or {}).get("content") or ""
        usage = completion.get("usage") or {}
        step.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        self.spent_micros += await _worst_micros(self.call, model, step.usage.prompt_tokens, step.usage.completion_tokens)
        return step

    # --- the modes ---------------------------------------------------------------------------

    async def vote(self) -> tuple[str, str]:
        answers = await asyncio.gather(*(self.ask("answer", m, self._messages()) for m in self.models))
        good = [s for s in answers if s.status == 200]
        if not good:
            raise _nothing_answered("No model answered", answers)
        failed = "".join(f"\n(Model {s.model} could not answer: {s.error})" for s in answers if s.status != 200)
        candidates = "\n\n".join(f"### Answer {n} ({s.model})\n{s.text}" for n, s in enumerate(good, 1))
        brief = (
            f"{len(good)} assistants answered the conversation below. Pick the best answer or merge them into "
            "one better answer. Reply with the final answer only, then a last line starting with "
            f"'REASON:' that says briefly why.{failed}\n\n{candidates}"
        )
        verdict = await self.ask("judge", self.judge, [*self._messages(), {"role": "user", "content": brief}])
        if verdict.status != 200:
            best = good[0]
            return best.text, f"The judge {self.judge} failed ({verdict.error}); the first answer ({best.model}) is given."
        text, _sep, reason = verdict.text.rpartition("REASON:")
        return (text.strip() or verdict.text), reason.strip()

    async def refine(self) -> tuple[str, str]:
        writer = self.models[0]
        critic = self.models[1] if len(self.models) > 1 else writer
        draft = await self.ask("draft", writer, self._messages())
        if draft.status != 200:
            raise _nothing_answered("The first draft failed", [draft])
        text = draft.text
        for _ in range(self.rounds):
            critique = await self.ask(
                "critique",
                critic,
                [
                    *self._messages(),
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": "Critique the answer above: list its errors and gaps."},
                ],
            )
            if critique.status != 200:
                return text, f"Stopped early: the critique failed ({critique.error})."
            rewrite = await self.ask(
                "rewrite",
                writer,
                [
                    *self._messages(),
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"A reviewer said:\n{critique.text}\n\nRewrite your answer to fix this. Reply with the new answer only.",
                    },
                ],
            )
            if rewrite.status != 200:
                return text, f"Stopped early: the rewrite failed ({rewrite.error})."
            text = rewrite.text
        return text, f"{self.rounds} round(s) of critique and rewrite."

    async def adversarial(self) -> tuple[str, str]:
        defender = self.models[0]
        attacker = self.models[1] if len(self.models) > 1 else defender
        first = await self.ask("answer", defender, self._messages())
        if first.status != 200:
            raise _nothing_answered("The first answer failed", [first])
        text = first.text
        for _ in range(self.rounds):
            attack = await self.ask(
                "attack",
                attacker,
                [
                    *self._messages(),
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": "Attack the answer above: find every flaw, wrong claim and weak argument."},
                ],
            )
            if attack.status != 200:
                return text, f"Stopped early: the attack failed ({attack.error})."
            defense = await self.ask(
                "defense",
                defender,
                [
                    *self._messages(),
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"A critic attacked your answer:\n{attack.text}\n\n"
                        "Defend it where it is right and correct it where it is wrong. Reply with the final answer only.",
                    },
                ],
            )
            if defense.status != 200:
                return text, f"Stopped early: the defense failed ({defense.error})."
            text = defense.text
        return text, f"{self.rounds} round(s) of attack and defense."

    def _messages(self) -> list[dict]:
        return self.request["messages"]

    def planned(self) -> list[tuple[str, int]]:
        """(model, prompt tokens) of every step the run may take, for the up-front ceiling check."""
        prompt = tokens.estimate_request_prompt_tokens({"messages": self._messages()})
        step = self.step_max_tokens
        if self.call.decision.model == "tokenhub/vote":
            return [(m, prompt) for m in self.models] + [(self.judge, prompt + step * len(self.models) + 100)]
        writer = self.models[0]
        other = self.models[1] if len(self.models) > 1 else writer
        return [(writer, prompt)] + [
            pair for _ in range(self.rounds) for pair in ((other, prompt + step + 50), (writer, prompt + 2 * step + 50))
        ]


def _nothing_answered(what: str, failed: list[Step]) -> TokenHubError:
    """The error of a run in which no step answered. Steps all refused before reaching an
    upstream, for one reason (status and code), make the run refused for it: the client's
    problem (money, a price, no channel, its rate), which a retry of the same run will not fix
    sooner. Anything else (a step that reached an upstream, or reasons that differ) is 502."""
    detail = "; ".join(f"{s.model}: {s.error}" for s in failed) if len(failed) > 1 else failed[0].error
    refusals = [s.refusal for s in failed]
    if any(r is None for r in refusals) or len({(r.status, r.code) for r in refusals}) != 1:
        return UpstreamError(f"{what}: {detail}")
    first = refusals[0]
    waits = [r.headers.get("retry-after") for r in refusals]
    # Retry-After only when every model says when (the soonest: a vote can run on fewer models)
    headers = {"retry-after": min(waits, key=int)} if all(w and w.isascii() and w.isdigit() for w in waits) else None
    return type(first)(f"{what}: {detail}", param=first.param, code=first.code, headers=headers)


async def _worst_micros(call: Call, model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """List cost in micro-USD times the tenant group's ratio (no route discount: the most a
    step can cost)."""
    card = await ratecard_aget()
    table = await table_aget()
    info = table.resolve(model)
    price = card.prices.get(info.public_id) if info else None
    if price is None or price.is_free:
        return 0
    listed = list_cost_micros(price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    return int(listed * card.group_ratio(call.identity.policy.tenant_group))


async def _visible_models(call: Call, wanted: int) -> list[str]:
    table = await table_aget()
    group = call.identity.policy.tenant_group
    return [
        public_id for public_id, info in sorted(table.models.items())
        if not info.is_hidden and call.identity.policy.allows_model(public_id)
        and any(r.is_enabled and group in r.groups for r in table.routes.get(public_id, ()))
    ][:wanted]


def _check_body(request: dict) -> tuple[list[str] | None, str | None, int | None]:
    models = request.get("models")
    if models is not None and (
        not isinstance(models, list)
        or not models
        or len(models) > MAX_MODELS
        or not all(isinstance(m, str) and m and not is_orchestration(m) for m in models)
    ):
        raise InvalidRequest(f"'models' must be a list of 1 to {MAX_MODELS} public model ids.", param="models", code="invalid_value")
    judge = request.get("judge")
    if judge is not None and (not isinstance(judge, str) or not judge or is_orchestration(judge)):
        raise InvalidRequest("'judge' must be a public model id.", param="judge", code="invalid_value")
    rounds = request.get("rounds")
    if rounds is not None and (not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ROUNDS):
        raise InvalidRequest(f"'rounds' must be an integer from 1 to {MAX_ROUNDS}.", param="rounds", code="invalid_value")
    return models, judge, rounds


async def orchestrate(call: Call, request: dict) -> Reply | StreamReply:
    mode = request["model"]
    if mode not in MODES:
        raise ModelNotFound(f"The model '{echo(mode)}' does not exist; the orchestration models are: {', '.join(MODES)}.", param="model")
    models, judge, rounds = _check_body(request)
    table = await table_aget()
    # as a plain request would be answered for its `model`: 404 or 403, naming the field
    for name in models or ():
        model_check(call, table, name, param="models")
    if judge:
        model_check(call, table, judge, param="judge")
    models = models or await _visible_models(call, DEFAULT_MODELS)
    if not models:
        raise InvalidRequest("No model is available to this key for orchestration; give 'models'.", param="models", code="invalid_value")
    name_model(call, mode)
    run = Run(call, request, models=models, judge=judge or models[0], rounds=rounds or (2 if mode == "tokenhub/refine" else 1))
    ceiling = call.admission.directives.max_cost_micros
    if ceiling is not None:
        worst = 0
        for model, prompt in run.planned():
            worst += await _worst_micros(call, model, prompt, run.step_max_tokens)
        if worst > ceiling:
            raise InsufficientQuota(
                f"This {mode} run could cost up to ${worst / 1_000_000:.6f} (every step at its output limit), more than "
                f"its max_cost of ${ceiling / 1_000_000:.6f}; lower max_tokens, rounds or the number of models, or raise max_cost."
            )
    body = getattr(run, mode.removeprefix("tokenhub/"))
    try:
        text, reason = await asyncio.wait_for(body(), timeout=settings.ORCHESTRATION_DEADLINE_S)
    except asyncio.TimeoutError:
        raise UpstreamError(f"The {mode} run passed its deadline of {settings.ORCHESTRATION_DEADLINE_S:.0f} s.") from None
    usage = Usage(
        prompt_tokens=sum(s.usage.prompt_tokens for s in run.steps if s.usage),
        completion_tokens=sum(s.usage.completion_tokens for s in run.steps if s.usage),
    )
    record(call, status=200, usage=usage, meter=Meter(call, None, {}))  # the steps carry the charges
    extra = {"mode": mode, "reason": reason, "steps": [s.as_dict() for s in run.steps]}
    completion_id = "chatcmpl-" + call.identity.request_id.removeprefix("req_")
    headers = call.headers()
    if request.get("stream"):
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        return StreamReply(_chunks(completion_id, mode, text, usage, extra, include_usage), headers)
    completion = {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": mode,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage_to_openai(usage), "tokenhub": extra,
    }
    return Reply(200, orjson.dumps(completion), headers)


async def _chunks(completion_id: str, mode: str, text: str, usage: Usage, extra: dict, include_usage: bool):
    def line(obj: dict) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": mode}
    yield line({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    for start in range(0, len(text), 64):
        yield line({**base, "choices": [{"index": 0, "delta": {"content": text[start:start + 64]}, "finish_reason": None}]})
    yield line({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "tokenhub": extra})
    if include_usage:
        yield line({**base, "choices": [], "usage": usage_to_openai(usage)})
    yield b"data: [DONE]\n\n"


