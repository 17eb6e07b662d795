"""In-band directives: how a caller steers one request's routing without changing code.

Headers, or a directive line at the start of a system message (removed before the request
goes upstream; the line wins over a header of the same name):

    X-TokenHub-Mode: cheap                    @tokenhub mode=cheap
    X-TokenHub-Max-Cost: 0.05                 @tokenhub max_cost=0.05          (USD, this request)
    X-TokenHub-Prefer-Brand: anthropic,openai @tokenhub prefer_brand=anthropic,openai
    X-TokenHub-Exclude-Brand: deepseek        @tokenhub exclude_brand=deepseek
    X-TokenHub-Latency-Budget-Ms: 3000        @tokenhub latency_budget_ms=3000

- mode: the routing mode (channels.strategies.MODES) for this request;
- max_cost: a route on which the request could cost more than this (its hold) is not tried;
  when no route fits, 402 saying so. The charge can never exceed the hold, so never this;
- prefer_brand: routes of these brands are tried first, in the mode's order, then the others;
- exclude_brand: routes of these brands are not tried;
- latency_budget_ms: each attempt waits at most this long for the upstream's first byte,
  then fails over to the next route.

An unknown name or a bad value is a 400 `invalid_directive` (an unknown mode in the header keeps
its own code, `invalid_mode`; in the line it is `invalid_directive` like any bad line value, and
the message says it was the line). A key made with directives
forbidden (`create_api_key --no-directives`) gets 403 `directives_not_allowed` for any of them.
The request log keeps the directives each request carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from channels.strategies import MODES

from .errors import Forbidden, InvalidRequest, echo

LINE_PREFIX = "@tokenhub"
HEADERS = {
    "x-tokenhub-mode": "mode",
    "x-tokenhub-max-cost": "max_cost",
    "x-tokenhub-prefer-brand": "prefer_brand",
    "x-tokenhub-exclude-brand": "exclude_brand",
    "x-tokenhub-latency-budget-ms": "latency_budget_ms",
}
NAMES = frozenset(HEADERS.values())
MAX_COST_USD = Decimal("100000")
MAX_LATENCY_BUDGET_MS = 600_000


@dataclass(frozen=True, slots=True)
class Directives:
    mode: str | None = None
    max_cost_micros: int | None = None  # micro-USD
    prefer_brands: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    latency_budget_ms: int | None = None
    given: dict = field(default_factory=dict)  # name -> value as the caller wrote it (for the log)

    @property
    def is_empty(self) -> bool:
        return not self.given


NONE = Directives()


def _bad(message: str, name: str) -> InvalidRequest:
    return InvalidRequest(message, param=name, code="invalid_directive")


def _brands(value: str, name: str, where: str) -> tuple[str, ...]:
    brands = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    if not brands:
        raise _bad(f"Directive {name}{where} needs one or more brand names, comma-separated.", name)
    return brands


def _build(given: dict[str, str], *, from_line: frozenset[str] = frozenset()) -> Directives:
    """`from_line`: the names whose value came from the @tokenhub line (a bad one says so)."""
    values: dict = {}
    for name, raw in given.items():
        where = f" (in the {LINE_PREFIX} line)" if name in from_line else ""
        if name == "mode":
            mode = raw.strip().lower()
            if mode not in MODES:
                if where:
                    raise _bad(f"Directive mode{where} must be one of: {', '.join(MODES)}; got {echo(raw)!r}.", name)
                raise InvalidRequest(  # the header's own code, as before directives: clients match on it
                    f"Unknown X-TokenHub-Mode {echo(raw)!r}; use one of: {', '.join(MODES)}.", param="X-TokenHub-Mode", code="invalid_mode"
                )
            values["mode"] = mode
        elif name == "max_cost":
            try:
                usd = Decimal(raw.strip())
            except InvalidOperation:
                raise _bad(f"Directive max_cost{where} must be a number of USD, like 0.05; got {echo(raw)!r}.", name) from None
            if not usd.is_finite() or usd <= 0 or usd > MAX_COST_USD:
                raise _bad(f"Directive max_cost{where} must be above 0 and at most {MAX_COST_USD} USD; got {echo(raw)!r}.", name)
            values["max_cost_micros"] = int(usd * 1_000_000)
        elif name == "prefer_brand":
            values["prefer_brands"] = _brands(raw, name, where)
        elif name == "exclude_brand":
            values["exclude_brands"] = _brands(raw, name, where)
        elif name == "latency_budget_ms":
            text = raw.strip()
            if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LATENCY_BUDGET_MS:  # isdigit alone takes "²"
                raise _bad(
                    f"Directive latency_budget_ms{where} must be a whole number of milliseconds from 1 to "
                    f"{MAX_LATENCY_BUDGET_MS}; got {echo(raw)!r}.",
                    name,
                )
            values["latency_budget_ms"] = int(text)
    return Directives(**values, given=dict(given))


def _from_headers(headers) -> dict[str, str]:
    given = {}
    for header, name in HEADERS.items():
        value = headers.get(header)
        if value is not None:
            given[name] = value
    for header in headers.keys():
        if header.lower().startswith("x-tokenhub-") and header.lower() not in HEADERS and header.lower() != "x-tokenhub-overhead-ms":
            raise _bad(f"Unknown directive header {echo(header)!r}; known: {', '.join(h.title() for h in HEADERS)}.", header)
    return given


def _parse_line(line: str) -> dict[str, str]:
    given = {}
    for token in line[len(LINE_PREFIX):].split():
        name, equals, value = token.partition("=")
        if not equals or not value:
            raise _bad(f"A directive is name=value; got {echo(token)!r}.", "messages")
        if name not in NAMES:
            raise _bad(f"Unknown directive {echo(name)!r}; known: {', '.join(sorted(NAMES))}.", "messages")
        given[name] = value
    return given


def _take_line(request: dict) -> dict[str, str]:
    """The directive line of the first system (or developer) message, removed from it."""
    for index, message in enumerate(request.get("messages") or ()):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            text, rest = _split(content)
            if text is None:
                return {}
            if rest.strip():
                message["content"] = rest
            else:
                del request["messages"][index]
            return _parse_line(text)
        if isinstance(content, list) and content and isinstance(content[0], dict) and isinstance(content[0].get("text"), str):
            text, rest = _split(content[0]["text"])
            if text is None:
                return {}
            if rest.strip():
                content[0] = {**content[0], "text": rest}
            else:
                del content[0]
                if not content:
                    del request["messages"][index]
            return _parse_line(text)
        return {}
    return {}


def _split(text: str) -> tuple[str | None, str]:
    stripped = text.lstrip()
    if not stripped.startswith(LINE_PREFIX) or (len(stripped) > len(LINE_PREFIX) and not stripped[len(LINE_PREFIX)].isspace()):
        return None, text
    line, _newline, rest = stripped.partition("\n")
    return line.strip(), rest


def directives_take(*, headers, request: dict | None, is_allowed: bool) -> Directives:
    """The request's directives; a directive line is removed from `request` (changed in place)."""
    given = _from_headers(headers)
    line = _take_line(request) if request is not None else {}
    given.update(line)
    if not given:
        return NONE
    if not is_allowed:
        raise Forbidden(
            "This API key may not use TokenHub directives (X-TokenHub-* headers or an @tokenhub line).", code="directives_not_allowed"
        )
    return _build(given, from_line=frozenset(line))


def anthropic_system_strip(native: dict) -> None:
    """Remove a directive line from an Anthropic request's own `system` (changed in place): that
    body goes to Anthropic channels untouched, so the line must leave it too. The translated
    chat request keeps it, for `directives_take`."""
    system = native.get("system")
    if isinstance(system, str):
        line, rest = _split(system)
        if line is not None:
            if rest.strip():
                native["system"] = rest
            else:
                del native["system"]
    elif isinstance(system, list) and system and isinstance(system[0], dict) and isinstance(system[0].get("text"), str):
        line, rest = _split(system[0]["text"])
        if line is not None:
            if rest.strip():
                system[0] = {**system[0], "text": rest}
            else:
                del system[0]
                if not system:
                    del native["system"]


def responses_line_strip(native: dict) -> None:
    """Remove a directive line from a Responses request's own body (changed in place): from its
    `instructions`, else from its first system or developer input message, the one the
    translated chat request reads it from. That body goes upstream as it is on a route that
    speaks the Responses API, so the line must leave it too; the translated request keeps it,
    for `directives_take`."""
    instructions = native.get("instructions")
    if isinstance(instructions, str) and instructions:
        line, rest = _split(instructions)
        if line is not None:
            if rest.strip():
                native["instructions"] = rest
            else:
                del native["instructions"]
        return
    items = native.get("input")
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") not in ("system", "developer"):
            continue
        content = item.get("content")
        if isinstance(content, str):
            line, rest = _split(content)
            if line is not None:
                if rest.strip():
                    items[index] = {**item, "content": rest}
                else:
                    del items[index]
        elif isinstance(content, list) and content and isinstance(content[0], dict) and isinstance(content[0].get("text"), str):
            line, rest = _split(content[0]["text"])
            if line is not None:
                parts = [{**content[0], "text": rest}, *content[1:]] if rest.strip() else content[1:]
                if parts:
                    items[index] = {**item, "content": parts}
                else:
                    del items[index]
        return
