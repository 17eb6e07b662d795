"""Protocol adapters between the relay and its upstreams. Pure Python: no Django here.

`providers.base` holds the contract (Adapter, Target, Timeouts, Chunk, ProviderError...);
`providers.registry.get_adapter(type)` gives the adapter for a channel's provider type.
"""

from providers.base import (
    Adapter,
    ChatResult,
    ChatStream,
    Chunk,
    ErrorKind,
    ProviderError,
    Target,
    Timeouts,
    Usage,
)

__all__ = [
    "Adapter",
    "ChatResult",
    "ChatStream",
    "Chunk",
    "ErrorKind",
    "ProviderError",
    "Target",
    "Timeouts",
    "Usage",
]
