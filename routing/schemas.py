"""What each /v1 endpoint accepts: one pydantic model per endpoint, checked before anything is
held or sent. A field the relay (or its token counter, or a translation) reads is declared
here with its type, strictly (no "12" for 12, no true for 1); fields the relay only passes on
are allowed as they come (`extra="allow"`), since vendors add options faster than we could
list them, and none of them is read on our side.

    request_check(schema, body, protocol=...) -> None, or raises InvalidRequest

The error names the first bad field: `param` is its path (`messages[0].content[1].text`), the
message says what was expected; in Anthropic's shape the path reads `messages.0.content.1.text`.
Codes: `missing_model`, `invalid_messages`, `invalid_input`, `invalid_prompt` for those fields
(kept from before, clients match them), `missing_required_parameter` for any other absent
field, `invalid_value` otherwise. `n` (and `best_of`) above REQUEST_MAX_N is `invalid_value`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from django.conf import settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import InvalidRequest, echo

__all__ = [
    "ChatRequest",
    "CompletionsRequest",
    "CountTokensRequest",
    "EmbeddingsRequest",
    "MessagesRequest",
    "ResponsesRequest",
    "SCHEMAS",
    "request_check",
]

Number = Union[StrictInt, StrictFloat]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# --- OpenAI chat ---------------------------------------------------------------------------


class ContentPart(_Open):
    type: StrictStr
    text: StrictStr | None = None
    image_url: StrictStr | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self):
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs 'text', a string")
        return self


class FunctionCall(_Open):
    name: StrictStr
    arguments: StrictStr  # JSON text, as OpenAI sends it: never an object


class ToolCall(_Open):
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    function_call: FunctionCall | None = None
    refusal: StrictStr | None = None
    reasoning_content: StrictStr | None = None


class FunctionSpec(_Open):
    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: StrictStr
    function: FunctionSpec | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class _Sampling(_Open):
    model: Annotated[StrictStr, Field(min_length=1)]
    max_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    user: StrictStr | None = None
    logit_bias: dict[str, Number] | None = None
    logprobs: StrictBool | StrictInt | None = None

    @field_validator("n", "best_of", check_fields=False)
    @classmethod
    def _within_limit(cls, value: int | None) -> int | None:
        limit = settings.REQUEST_MAX_N  # read per request: a setting changed at run time applies
        if value is not None and value > limit:
            raise ValueError(f"at most {limit} choices may be asked for in one request")
        return value


class ChatRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: PositiveInt | None = None
    tools: list[Tool] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    top_logprobs: StrictInt | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: StrictStr | None = None
    modalities: list[StrictStr] | None = None
    metadata: dict[str, Any] | None = None
    store: StrictBool | None = None


# --- OpenAI legacy completions and embeddings -------------------------------------------------


class CompletionsRequest(_Sampling):
    prompt: Annotated[StrictStr, Field(min_length=1)] | Annotated[list[StrictStr], Field(min_length=1)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1)
    ]
    max_completion_tokens: PositiveInt | None = None
    best_of: PositiveInt | None = None
    echo: StrictBool | None = None
    suffix: StrictStr | None = None


class EmbeddingsRequest(_Open):
    model: Annotated[StrictStr, Field(min_length=1)]
    input: Annotated[StrictStr, Field(min_length=1)] | Annotated[list[StrictStr], Field(min_length=1)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1)
    ]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    user: StrictStr | None = None


# --- Anthropic Messages -------------------------------------------------------------------------


class TextBlock(_Open):
    type: Literal["text"]
    text: StrictStr


class Block(_Open):
    type: StrictStr
    text: StrictStr | None = None
    source: dict[str, Any] | None = None
    id: StrictStr | None = None
    name: StrictStr | None = None
    input: dict[str, Any] | None = None
    tool_use_id: StrictStr | None = None
    content: StrictStr | list[dict[str, Any]] | None = None
    is_error: StrictBool | None = None
    title: StrictStr | None = None

    @model_validator(mode="after")
    def _text_block_has_text(self):
        if self.type == "text" and self.text is None:
            raise ValueError("a text block needs 'text', a string")
        if self.type == "tool_use" and (self.name is None or self.input is None):
            raise ValueError("a tool_use block needs 'name' (a string) and 'input' (an object)")
        if self.type == "tool_result" and self.tool_use_id is None:
            raise ValueError("a tool_result block needs 'tool_use_id', a string")
        if isinstance(self.content, list):
            for item in self.content:
                if item.get("type") == "text" and not isinstance(item.get("text"), str):
                    raise ValueError("a text block needs 'text', a string")
        return self


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: StrictStr | list[Block]


class AnthropicTool(_Open):
    name: StrictStr
    description: StrictStr | None = None
    input_schema: dict[str, Any] | None = None
    type: StrictStr | None = None


class ToolChoice(_Open):
    type: StrictStr
    name: StrictStr | None = None
    disable_parallel_tool_use: StrictBool | None = None


class Metadata(_Open):
    user_id: StrictStr | None = None


class CountTokensRequest(_Open):
    model: Annotated[StrictStr, Field(min_length=1)]
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: StrictStr | list[TextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: PositiveInt
    stream: StrictBool | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: StrictInt | None = None
    stop_sequences: list[StrictStr] | None = None
    metadata: Metadata | None = None


# --- OpenAI Responses ---------------------------------------------------------------------------


class ResponsesInputItem(_Open):
    type: StrictStr | None = None
    role: StrictStr | None = None
    content: StrictStr | list[dict[str, Any]] | None = None
    call_id: StrictStr | None = None
    name: StrictStr | None = None
    arguments: StrictStr | None = None
    output: StrictStr | list[Any] | dict[str, Any] | None = None


class ResponsesRequest(_Open):
    model: Annotated[StrictStr, Field(min_length=1)]
    input: StrictStr | list[ResponsesInputItem]
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    stream: StrictBool | None = None
    store: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None
    user: StrictStr | None = None


# --- media endpoints (routing.media) -----------------------------------------------------------

ModelName = Annotated[StrictStr, Field(min_length=1)]


class ImagesRequest(_Open):
    model: ModelName  # required here: the relay routes by it (OpenAI would default to dall-e-2)
    prompt: Annotated[StrictStr, Field(min_length=1)]
    n: Annotated[StrictInt, Field(ge=1, le=10)] | None = None
    size: StrictStr | None = None
    quality: StrictStr | None = None
    style: StrictStr | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: StrictStr | None = None


class SpeechRequest(_Open):
    model: ModelName
    input: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    voice: Annotated[StrictStr, Field(min_length=1)] | dict[str, Any]
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: Annotated[Number, Field(ge=0.25, le=4)] | None = None
    instructions: StrictStr | None = None


class ModerationsRequest(_Open):
    model: ModelName
    input: Annotated[StrictStr, Field(min_length=1)] | Annotated[list[StrictStr], Field(min_length=1)] | Annotated[
        list[dict[str, Any]], Field(min_length=1)
    ]


class TranscriptionsRequest(_Open):
    """The form fields of a multipart upload (the file is checked apart); numbers arrive as text."""

    model: ModelName
    language: StrictStr | None = None
    prompt: StrictStr | None = None
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] | None = None
    temperature: Annotated[Number, Field(ge=0, le=1)] | None = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "chat.completions": ChatRequest,
    "completions": CompletionsRequest,
    "embeddings": EmbeddingsRequest,
    "messages": MessagesRequest,
    "messages.count_tokens": CountTokensRequest,
    "responses": ResponsesRequest,
    "images.generations": ImagesRequest,
    "audio.speech": SpeechRequest,
    "audio.transcriptions": TranscriptionsRequest,
    "moderations": ModerationsRequest,
}

_FIELD_CODES = {"model": "missing_model", "messages": "invalid_messages", "input": "invalid_input", "prompt": "invalid_prompt"}


def request_check(schema: type[BaseModel], body: dict, *, protocol: str = "openai") -> None:
    try:
        schema.model_validate(body)
    except ValidationError as invalid:
        raise _invalid(invalid.errors(include_url=False, include_input=False), protocol) from None


def _invalid(errors: list[dict], protocol: str) -> InvalidRequest:
    # A missing field first; else the first bad field, and of the errors a union reports for
    # it (one per branch) the deepest, which says most about what went wrong.
    missing = [e for e in errors if e["type"] == "missing" and len(_path(e["loc"])) == 1]
    if missing:
        error = missing[0]
    else:
        first = _path(errors[0]["loc"])[:1]
        error = max((e for e in errors if _path(e["loc"])[:1] == first), key=lambda e: len(_path(e["loc"])))
    loc = _path(error["loc"])
    field = str(loc[0]) if loc else ""
    param = _param(loc) or None
    what = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        code = _FIELD_CODES.get(field, "missing_required_parameter")
    else:
        code = _FIELD_CODES.get(field, "invalid_value")
    if protocol == "anthropic":
        dotted = ".".join(str(part) for part in loc)
        return InvalidRequest(f"{echo(dotted)}: {what}" if dotted else what, param=param, code=code)
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code=code)
    return InvalidRequest(f"Invalid value for '{echo(param)}': {what}." if param else f"{what}.", param=param, code=code)


def _path(loc: tuple) -> list:
    # pydantic names union branches and validator types in the path ("str", "list[...]",
    # "function-after[...]"): keep only field names and list indexes.
    return [part for part in loc if isinstance(part, int) or (isinstance(part, str) and part.isidentifier() and part not in _BRANCHES)]


_BRANCHES = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "function-after"})


def _param(loc: list) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
