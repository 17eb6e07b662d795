"""Channel tests reuse the routing tests' fresh state and fake upstreams (one pool per package)."""

from tests.routing.conftest import _fresh_routing, _upstream_pool, serve_app, upstreams  # noqa: F401
