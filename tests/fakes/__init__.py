"""Fake upstreams: real servers on 127.0.0.1 for tests and benchmarks (no pytest inside)."""

from tests.fakes.base import RecordedRequest
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread

__all__ = ["FakeOpenAI", "RecordedRequest", "ServerThread"]
