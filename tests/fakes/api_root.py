"""A fake OpenAI-compatible upstream whose API root is `/v1`, as most are: `GET /v1/models`
answers, anything else (the host root's `/models` included) is a 404, like a real vendor's.

    fake = ApiRootOnly(api_key="sk-up")      # None: any key
    with ServerThread(fake) as server: ...   # server.url + "/v1" is the right base URL

No pytest here.
"""

from __future__ import annotations

from tests.fakes.base import send_json

__all__ = ["ApiRootOnly"]


class ApiRootOnly:
    def __init__(self, *, api_key: str | None = None, models: tuple[str, ...] = ("gpt-4o-mini",)) -> None:
        self.api_key = api_key
        self.models = models
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        headers = dict(scope["headers"])
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            if self.api_key is not None and headers.get(b"authorization") != f"Bearer {self.api_key}".encode():
                error = {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
                await send_json(send, 401, {"error": error})
                return
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
            await send_json(send, 200, {"object": "list", "data": data})
            return
        error = {"message": f"Invalid URL ({scope['method']} {scope['path']})", "type": "invalid_request_error", "param": None, "code": None}
        await send_json(send, 404, {"error": error})
