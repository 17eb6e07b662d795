"""Loaded by pytest before Django's settings (`-p tests.environment` in pyproject): the suite
runs as `make run` does, plain HTTP on loopback, so the production defaults (HTTPS redirect,
secure cookies) are off, and the fake upstreams on 127.0.0.1 are allowed. Processes the tests
start inherit both."""

import os

os.environ.setdefault("TOKENHUB_ENV", "dev")
os.environ.setdefault("TOKENHUB_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8")
