"""Errors a /v1 client can get, one class per status and code:

    TokenHubError                 HTTP  error.type             error.code
     ├── InvalidRequest            400  invalid_request_error  (varies)
     ├── AuthenticationFailed      401  invalid_request_error  invalid_api_key
     ├── InsufficientQuota         402  insufficient_quota     insufficient_quota
     ├── Forbidden                 403  invalid_request_error  (varies: ip_not_allowed, ...)
     │    └── ModelNotAllowed      403  invalid_request_error  model_not_allowed
     ├── ModelNotFound             404  invalid_request_error  model_not_found
     ├── RequestTooLarge           413  invalid_request_error  request_too_large
     ├── RateLimited               429  requests               rate_limit_exceeded
     ├── UpstreamError             502  upstream_error         upstream_error
     ├── NoAvailableChannel        503  service_unavailable    no_available_channel
     └── ModelNotPriced            503  service_unavailable    model_not_priced

`render_openai` and `render_anthropic` turn any of them into the bytes each protocol expects.
Anthropic's error type follows the status (ANTHROPIC_TYPES); a status Anthropic has no type of
its own for (409 for a reused Idempotency-Key, ...) is `invalid_request_error` below 500 and
`api_error` above, so the client reads whose fault it is.
Errors no retry can fix carry `x-should-retry: false` so the official SDKs give up at once.
A value the client sent is quoted in a message through `echo`, which cuts it to ECHO_MAX_CHARS:
a 100,000-character model name is not sent back whole.
"""

from __future__ import annotations

import orjson

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

ECHO_MAX_CHARS = 200


def echo(value: object) -> str:
    """`value` (something the client sent) as an error message may quote it: its first
    ECHO_MAX_CHARS characters, and an ellipsis when there were more."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= ECHO_MAX_CHARS else text[:ECHO_MAX_CHARS] + "…"


def anthropic_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status: the client's fault or the server's."""
    return ANTHROPIC_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


class TokenHubError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"
    should_retry = True

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if not self.should_retry:
            headers["x-should-retry"] = "false"
        return headers

    def render_openai(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}})

    def render_anthropic(self) -> bytes:
        return orjson.dumps(
            {"type": "error", "error": {"type": anthropic_type(self.status), "message": self.message}}
        )


class InvalidRequest(TokenHubError):
    status, type, code, should_retry = 400, "invalid_request_error", "invalid_request", False


class AuthenticationFailed(TokenHubError):
    status, type, code, should_retry = 401, "invalid_request_error", "invalid_api_key", False


class InsufficientQuota(TokenHubError):
    status, type, code, should_retry = 402, "insufficient_quota", "insufficient_quota", False


class Forbidden(TokenHubError):
    status, type, code, should_retry = 403, "invalid_request_error", "forbidden", False


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"


class ModelNotFound(TokenHubError):
    status, type, code, should_retry = 404, "invalid_request_error", "model_not_found", False


class RequestTooLarge(TokenHubError):
    status, type, code, should_retry = 413, "invalid_request_error", "request_too_large", False


class RateLimited(TokenHubError):
    status, type, code, should_retry = 429, "requests", "rate_limit_exceeded", True


class UpstreamError(TokenHubError):
    status, type, code, should_retry = 502, "upstream_error", "upstream_error", True


class NoAvailableChannel(TokenHubError):
    status, type, code, should_retry = 503, "service_unavailable", "no_available_channel", True


class ModelNotPriced(TokenHubError):
    status, type, code, should_retry = 503, "service_unavailable", "model_not_priced", False
