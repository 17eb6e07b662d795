"""OpenAI chat-completions -> Gemini `generateContent`, and Gemini's answers back.

    to_generate_request(request)        OpenAI request -> GenerateContentRequest body
    from_response(response)             GenerateContentResponse -> (chat.completion, Usage, finish)
    ResponseEvents                      streamed GenerateContentResponse chunks -> OpenAI chunks
    usage_from(usage_metadata)          usageMetadata -> Usage

Gemini names functions, not calls: a `functionResponse` carries the function's name, which we
find from the assistant turn that made the call (by tool_call_id). Gemini 3 also wants each
call's `thoughtSignature` back on the next turn; we hand it to the client inside the tool
call id (`call_<hex>__thought__<signature, base64url>`) and as
`extra_content.google.thought_signature` (the field Google's own OpenAI-compatible endpoint
uses), and read either back. A call without one (history from another model) gets the
placeholder Google documents for that case.

Safety: a blocked prompt (`promptFeedback.blockReason`), or an answer stopped for safety
before any content, is a clear 400 (`content_filter`); an answer cut for safety after some
content ends with finish_reason `content_filter`.
"""

from __future__ import annotations

import mimetypes
import time
from typing import Any

import orjson

from providers.base import ErrorKind, ProviderError, Usage
from providers.usage import usage_from_gemini
from providers.translate.common import (
    bad_request,
    chunk_object,
    json_object,
    new_id,
    parse_data_url,
    text_of,
    usage_to_openai,
)

__all__ = [
    "FINISH_REASONS",
    "ResponseEvents",
    "from_response",
    "signature_from_call",
    "to_generate_request",
    "tool_call_id",
    "usage_from",
]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
}
_SIGNATURE_MARK = "__thought__"
# Google's documented stand-in for a call whose signature we never had (thought-signatures docs)
_PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"


# --- request -----------------------------------------------------------------------------------


def to_generate_request(request: dict) -> dict:
    system: list[str] = []
    contents: list[dict] = []
    names_by_call: dict[str, str] = {}
    for message in request.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"), separator="\n")
            if text:
                system.append(text)
        elif role == "user":
            _append(contents, "user", _parts(message.get("content")))
        elif role == "assistant":
            _append(contents, "model", _model_parts(message, names_by_call))
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            name = names_by_call.get(call_id) or message.get("name") or ""
            response = {"functionResponse": {"name": name, "response": _response_object(message.get("content"))}}
            _append(contents, "user", [response])
        else:
            raise bad_request(f"Unknown message role {role!r}.")

    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    declarations = [
        _declaration(tool["function"])
        for tool in request.get("tools") or ()
        if isinstance(tool, dict) and tool.get("type", "function") == "function" and isinstance(tool.get("function"), dict)
    ]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(request.get("tool_choice"))
        if tool_config is not None:
            body["toolConfig"] = tool_config
    return body


def _append(contents: list[dict], role: str, parts: list[dict]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": list(parts)})


def _parts(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content or ():
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(_media_part(image.get("url") if isinstance(image, dict) else image, "image/jpeg"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio.get("data") or ""}})
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise bad_request("Gemini models take files as data URLs (file.file_data) only.")
            parts.append(_media_part(file["file_data"], "application/pdf"))
        else:
            raise bad_request(f"Gemini models do not take '{kind}' content parts.")
    return parts


def _media_part(url: Any, default_type: str) -> dict:
    if not isinstance(url, str) or not url:
        raise bad_request("A media part has no url.")
    parsed = parse_data_url(url)
    if parsed is not None:
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return {"fileData": {"mimeType": guessed or default_type, "fileUri": url}}


def _model_parts(message: dict, names_by_call: dict[str, str]) -> list[dict]:
    parts: list[dict] = []
    text = text_of(message.get("content"))
    if text:
        parts.append({"text": text})
    for number, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        name = function.get("name") or ""
        names_by_call[call.get("id") or ""] = name
        part: dict[str, Any] = {"functionCall": {"name": name, "args": json_object(function.get("arguments"))}}
        signature = signature_from_call(call)
        if signature is None and number == 0:
            signature = _PLACEHOLDER_SIGNATURE  # only a turn's first call must carry one
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _response_object(content: Any) -> dict:
    text = text_of(content, separator="\n")
    try:
        value = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"output": text}


def _declaration(function: dict) -> dict:
    declaration: dict[str, Any] = {"name": function.get("name") or ""}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if parameters:
        # parametersJsonSchema takes JSON Schema as is (the older `parameters` field takes an
        # OpenAPI subset that rejects additionalProperties, $defs, type lists...)
        declaration["parametersJsonSchema"] = {k: v for k, v in parameters.items() if k != "$schema"}
    return declaration


def _tool_config(choice: Any) -> dict | None:
    if choice == "auto":
        mode: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        mode = {"mode": "NONE"}
    elif choice == "required":
        mode = {"mode": "ANY"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        mode = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    else:
        return None
    return {"functionCallingConfig": mode}


def _generation_config(request: dict) -> dict:
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        if request.get(ours) is not None:
            config[theirs] = request[ours]
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (request.get("n") or 1) > 1:
        config["candidateCount"] = request["n"]
    response_format = request.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            config["responseMimeType"] = "application/json"
        elif response_format.get("type") == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (response_format.get("json_schema") or {}).get("schema")
            if schema:
                config["responseJsonSchema"] = schema
    return config


# --- tool call ids carry Gemini's thought signatures -----------------------------------------


def tool_call_id(signature: str | None) -> str:
    base = new_id("call_")
    if not signature:
        return base
    # base64 -> base64url, so the id keeps to [A-Za-z0-9_-] (what Anthropic allows, should
    # the conversation move there); protobuf's JSON reads either alphabet back.
    return base + _SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def signature_from_call(call: dict) -> str | None:
    google = (call.get("extra_content") or {}).get("google") or {}
    if google.get("thought_signature"):
        return google["thought_signature"]
    _, mark, encoded = (call.get("id") or "").partition(_SIGNATURE_MARK)
    if not mark or not encoded:
        return None
    return encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4)


# --- answers -----------------------------------------------------------------------------------


def usage_from(metadata: Any) -> Usage | None:
    """usageMetadata -> ours, checked (see providers.usage); None if unusable."""
    return usage_from_gemini(metadata)


def blocked_error(response: dict) -> ProviderError | None:
    """The error for a blocked prompt, or None."""
    feedback = response.get("promptFeedback") or {}
    reason = feedback.get("blockReason")
    if reason and not response.get("candidates"):
        detail = f": {feedback['blockReasonMessage']}" if feedback.get("blockReasonMessage") else ""
        return ProviderError(
            ErrorKind.BAD_REQUEST, f"Gemini blocked the prompt ({reason}){detail}", status=400, code="content_filter"
        )
    return None


def _answer_blocked(reason: str) -> ProviderError:
    return ProviderError(
        ErrorKind.BAD_REQUEST, f"Gemini blocked the answer ({reason}) before it had any content", status=400, code="content_filter"
    )


def _call_from_part(part: dict, index: int | None = None) -> dict:
    function_call = part["functionCall"]
    signature = part.get("thoughtSignature") or function_call.get("thoughtSignature")
    call: dict[str, Any] = {
        "id": tool_call_id(signature),
        "type": "function",
        "function": {"name": function_call.get("name") or "", "arguments": orjson.dumps(function_call.get("args") or {}).decode()},
    }
    if index is not None:
        call = {"index": index, **call}
    if signature:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def from_response(response: dict) -> tuple[dict, Usage, str | None]:
    error = blocked_error(response)
    if error is not None:
        raise error
    choices = []
    for number, candidate in enumerate(response.get("candidates") or ()):
        texts, thoughts, calls = [], [], []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                calls.append(_call_from_part(part))
            elif part.get("thought"):
                thoughts.append(part.get("text") or "")
            elif "text" in part:
                texts.append(part["text"])
        reason = candidate.get("finishReason")
        if not (texts or thoughts or calls) and FINISH_REASONS.get(reason) == "content_filter":
            raise _answer_blocked(reason)
        finish = "tool_calls" if calls else (FINISH_REASONS.get(reason, "stop") if reason else None)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        choices.append({"index": candidate.get("index", number), "message": message, "logprobs": None, "finish_reason": finish})
    usage = usage_from(response.get("usageMetadata"))
    completion = {
        "id": response.get("responseId") or new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.get("modelVersion") or "",
        "choices": choices,
        **({"usage": usage_to_openai(usage)} if usage is not None else {}),  # unusable: the relay counts
    }
    return completion, usage, choices[0]["finish_reason"] if choices else None


class ResponseEvents:
    """Streamed GenerateContentResponse chunks -> OpenAI chunk objects, as they arrive.

    Gemini sends whole function calls (never argument pieces), a `finishReason` on the last
    candidate chunk, `usageMetadata` on every chunk (the last one is the total) and no end
    marker: the stream is complete when a finish reason came. `end()` gives the usage-only
    chunk.
    """

    __slots__ = ("id", "model", "created", "usage", "finish_reason", "_started", "_calls", "_has_content")

    def __init__(self) -> None:
        self.id = new_id("chatcmpl-")
        self.model = ""
        self.created = int(time.time())
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._started = False
        self._calls = 0
        self._has_content = False

    def feed(self, response: dict) -> list[tuple[dict, str]]:
        out: list[tuple[dict, str]] = []
        if not self._started:
            error = blocked_error(response)
            if error is not None:
                raise error
            self._started = True
            self.id = response.get("responseId") or self.id
            self.model = response.get("modelVersion") or ""
            out.append((self._chunk({"role": "assistant", "content": ""}), ""))
        metadata = response.get("usageMetadata")
        if metadata:
            self.usage = usage_from(metadata)
        for candidate in response.get("candidates") or ():
            if candidate.get("index", 0) != 0:
                continue  # one choice streams; n>1 is for whole answers
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    call = _call_from_part(part, self._calls)
                    self._calls += 1
                    self._has_content = True
                    out.append((self._chunk({"tool_calls": [call]}), call["function"]["name"] + call["function"]["arguments"]))
                elif part.get("text"):
                    self._has_content = True
                    key = "reasoning_content" if part.get("thought") else "content"
                    out.append((self._chunk({key: part["text"]}), part["text"]))
            reason = candidate.get("finishReason")
            if reason and self.finish_reason is None:
                mapped = FINISH_REASONS.get(reason, "stop")
                if mapped == "content_filter" and not self._has_content:
                    raise _answer_blocked(reason)
                self.finish_reason = "tool_calls" if self._calls else mapped
                out.append((self._chunk({}, self.finish_reason), ""))
        return out

    def end(self) -> dict | None:
        if self.usage is None:
            return None
        return chunk_object(self.id, self.created, self.model, None, usage=self.usage)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return chunk_object(self.id, self.created, self.model, delta, finish_reason)
