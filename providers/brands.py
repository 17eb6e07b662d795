"""OpenAI-compatible brands: where they live and the few quirks that matter.

Every brand here speaks OpenAI chat-completions and is served by `providers.openai`; a brand
only bends the request a little before it goes out. Which brand a target is: the channel's
`brand` (`add_channel --brand deepseek`) when it names one of ours, else guessed from the base
URL's host (`api.deepseek.com` -> deepseek), else plain `openai` (no quirks).

    brand        quirks applied to the outgoing request
    openai       none
    azure        deployment URL `/openai/deployments/{model}/...`, `api-key` header,
                 `api-version` query (default below; `options["azure"]["api_version"]` wins)
    deepseek     `reasoning_content` removed from earlier assistant turns (DeepSeek answers
                 400 when it is sent back)
    qwen         as deepseek (DashScope ignores it at best)
    glm          as deepseek
    mistral      `max_completion_tokens` sent as `max_tokens`; no `stream_options` (Mistral
                 rejects unknown fields; it reports usage in the last chunk anyway)
    groq         none on the way out; usage read from `x_groq.usage` too (see openai.py)
    vllm         `max_completion_tokens` sent as `max_tokens` (older servers know only that)
    ollama       `max_completion_tokens` sent as `max_tokens`
    openrouter   none (`reasoning` deltas are counted like `reasoning_content`)

Which targets take OpenAI's Responses API as it is (`POST {base_url}/responses`,
`speaks_responses`): the channel's `options["responses_api"]` when it is true or false; else
only OpenAI's own API (brand openai on `api.openai.com`). Azure never does here (its Responses
URL is not the deployment URL this adapter builds).

Answers are never rewritten: `reasoning_content` (DeepSeek, Qwen, GLM, vLLM) and `reasoning`
(OpenRouter, newer vLLM) reach the client as the upstream sent them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["Brand", "BRANDS", "RESPONSES_OPTION", "brand_for", "prepare", "speaks_responses"]

AZURE_API_VERSION = "2024-10-21"
RESPONSES_OPTION = "responses_api"  # channel option: this upstream takes /responses as it is


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    base_url: str = ""  # the vendor's API root, for operators (docs, `add_channel` hints)
    hosts: tuple[str, ...] = ()  # hosts ("api.x.com") or host suffixes (".x.com") of the brand
    is_azure: bool = False
    sends_stream_options: bool = True
    renames_max_completion_tokens: bool = False
    strips_history_reasoning: bool = False

    @property
    def has_request_quirks(self) -> bool:
        return (
            not self.sends_stream_options
            or self.renames_max_completion_tokens
            or self.strips_history_reasoning
        )


BRANDS: dict[str, Brand] = {
    brand.name: brand
    for brand in (
        Brand("openai", "https://api.openai.com/v1", ("api.openai.com",)),
        Brand(
            "azure",
            "https://{resource}.openai.azure.com",
            (".openai.azure.com", ".cognitiveservices.azure.com"),
            is_azure=True,
        ),
        Brand(
            "deepseek",
            "https://api.deepseek.com/v1",
            ("api.deepseek.com",),
            strips_history_reasoning=True,
        ),
        Brand(
            "qwen",
            "https://dashscope.aliyuncs.com/compatible-mode/v1",
            ("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com"),
            strips_history_reasoning=True,
        ),
        Brand(
            "glm",
            "https://open.bigmodel.cn/api/paas/v4",
            ("open.bigmodel.cn", "api.z.ai"),
            strips_history_reasoning=True,
        ),
        Brand(
            "mistral",
            "https://api.mistral.ai/v1",
            ("api.mistral.ai",),
            sends_stream_options=False,
            renames_max_completion_tokens=True,
        ),
        Brand("groq", "https://api.groq.com/openai/v1", ("api.groq.com",)),
        Brand("vllm", "http://127.0.0.1:8000/v1", (), renames_max_completion_tokens=True),
        Brand("ollama", "http://127.0.0.1:11434/v1", (), renames_max_completion_tokens=True),
        Brand("openrouter", "https://openrouter.ai/api/v1", ("openrouter.ai",)),
    )
}
_PLAIN = BRANDS["openai"]


def brand_for(brand: str, base_url: str) -> Brand:
    """The brand a channel declared, else the one its host gives away, else plain OpenAI."""
    declared = BRANDS.get(brand)
    if declared is not None and declared is not _PLAIN:
        return declared
    return _brand_by_host(base_url)


@lru_cache(maxsize=256)
def _brand_by_host(base_url: str) -> Brand:
    host = (urlsplit(base_url).hostname or "").lower()
    for candidate in BRANDS.values():
        # "api.x.com" matches that host exactly; ".x.com" any host under x.com.
        if any(host == h or (h[0] == "." and host.endswith(h)) for h in candidate.hosts):
            return candidate
    if urlsplit(base_url).port == 11434:
        return BRANDS["ollama"]
    return _PLAIN


def speaks_responses(*, brand: str, base_url: str, options: dict) -> bool:
    """Whether the target takes Responses requests at `{base_url}/responses`."""
    found = brand_for(brand, base_url)
    if found.is_azure:
        return False
    declared = options.get(RESPONSES_OPTION)
    if isinstance(declared, bool):  # anything else (a string, a number) is as if unset
        return declared
    return found is _PLAIN and (urlsplit(base_url).hostname or "").lower() in _PLAIN.hosts


def prepare(brand: Brand, payload: dict) -> dict:
    """Apply the brand's request quirks to `payload` (ours to change: a copy of the caller's)."""
    if not brand.has_request_quirks:
        return payload
    if not brand.sends_stream_options:
        payload.pop("stream_options", None)
    if brand.renames_max_completion_tokens and "max_completion_tokens" in payload:
        value = payload.pop("max_completion_tokens")
        payload["max_tokens"] = value  # the held limit wins over any other the client set
    if brand.strips_history_reasoning:
        messages = payload.get("messages")
        if isinstance(messages, list) and any(
            isinstance(m, dict) and "reasoning_content" in m for m in messages
        ):
            payload["messages"] = [
                {k: v for k, v in m.items() if k != "reasoning_content"}
                if isinstance(m, dict) and "reasoning_content" in m
                else m
                for m in messages
            ]
    return payload
