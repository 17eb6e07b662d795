"""Adapters by channel provider type. One shared instance each: adapters keep no state."""

from __future__ import annotations

from providers.anthropic import AnthropicAdapter
from providers.base import Adapter
from providers.gemini import GeminiAdapter
from providers.openai import OpenAIAdapter
from providers.simulated import SimulatedAdapter

__all__ = ["get_adapter", "register_adapter", "provider_types"]

_ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "simulated": SimulatedAdapter(),
}


def get_adapter(provider_type: str) -> Adapter:
    try:
        return _ADAPTERS[provider_type]
    except KeyError:
        raise LookupError(f"no adapter for provider type {provider_type!r}") from None


def register_adapter(provider_type: str, adapter: Adapter) -> None:
    _ADAPTERS[provider_type] = adapter


def provider_types() -> tuple[str, ...]:
    return tuple(_ADAPTERS)
