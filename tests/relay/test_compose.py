"""No Docker engine runs here, so the compose file and the Dockerfile are checked against the
project itself: every command they run exists and parses (manage.py subcommands, the ASGI app
and uvicorn's options, the Celery app, its subcommands and their options), and every setting
they pass is one relay/settings.py reads."""

from __future__ import annotations

import json
import re
import shlex
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


# --- the YAML subset compose.yaml is written in (no YAML library among our dependencies) -----


def _scalar(text: str):
    if text.startswith("[") or text.startswith('"'):
        return json.loads(text)
    return text


def compose_load(text: str) -> dict:
    """Block mappings, block lists of scalars, one-line JSON lists, "quoted" and plain scalars,
    anchors (&name), aliases (*name) and merge keys (<<). Anything else is an error."""
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in text.splitlines() if raw.strip() and not raw.strip().startswith("#")]
    anchors: dict[str, object] = {}

    def block(i: int, indent: int):
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping: dict = {}
        merged: dict = {}
        while i < len(lines) and lines[i][0] == indent:
            key, colon, rest = lines[i][1].partition(":")
            assert colon, f"not a mapping line: {lines[i][1]!r}"
            rest = rest.strip()
            i += 1
            anchor = None
            if rest.startswith("&"):
                anchor, rest = rest[1:], ""
            if rest.startswith("*"):
                value = anchors[rest[1:]]
            elif rest:
                value = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                value, i = block(i, lines[i][0])
            else:
                value = None
            if anchor:
                anchors[anchor] = value
            if key == "<<":
                merged.update(value)
            else:
                mapping[key] = value
        assert i == len(lines) or lines[i][0] < indent, f"bad indentation at {lines[i][1]!r}"
        return {**merged, **mapping}, i

    document, end = block(0, 0)
    assert end == len(lines)
    return document


# --- what a command may be ---------------------------------------------------------------------


def check_command(argv: list[str]) -> str:
    """Raise unless `argv` is something this project really runs; returns what it is."""
    assert argv[0] == "python", argv
    if argv[1] == "manage.py":
        from django.core.management import get_commands

        assert argv[2] in get_commands(), f"manage.py has no command {argv[2]!r}"
        return f"manage.py {argv[2]}"
    if argv[1:3] == ["-m", "uvicorn"]:
        import importlib

        from uvicorn.main import main as uvicorn_cli

        ctx = uvicorn_cli.make_context("uvicorn", list(argv[3:]))  # refuses unknown options and bad choices
        module, _, attribute = ctx.params["app"].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))
        return "uvicorn " + ctx.params["app"]
    if argv[1:3] == ["-m", "celery"]:
        from celery.bin.base import CLIContext
        from celery.bin.celery import celery as celery_cli

        from relay.celery import app

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = celery_cli.make_context("celery", list(argv[3:]))
            assert ctx.params["app"] == "relay", "the Celery app is relay (relay/celery.py)"
            ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
            rest = list(ctx.protected_args) + list(ctx.args)
        sub = celery_cli.get_command(ctx, rest[0])
        assert sub is not None, f"celery has no subcommand {rest[0]!r}"
        sub.make_context(rest[0], rest[1:], parent=ctx)  # refuses unknown options
        return f"celery {rest[0]}"
    if argv[1] == "-c":
        compile(argv[2], "<healthcheck>", "exec")
        for path in re.findall(r"http://127\.0\.0\.1:8000(/[a-z/]*)", argv[2]):
            assert path in ("/healthz", "/readyz"), path
        return "python -c"
    raise AssertionError(f"unknown command {argv}")


def healthcheck_argv(test) -> list[str] | None:
    if test[0] == "CMD":
        return test[1:]
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1].replace("$$", "$"))
    raise AssertionError(test)


# --- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return compose_load(COMPOSE.read_text())


def ours(compose) -> dict:
    return {name: service for name, service in compose["services"].items() if "build" in service}


def test_compose_has_the_whole_topology(compose):
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    assert set(ours(compose)) == {"migrate", "web", "worker", "beat"}
    for service in ours(compose).values():
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_every_command_compose_runs_exists_in_the_project(compose, db):
    seen = {}
    for name, service in ours(compose).items():
        seen[name] = check_command(service["command"])
        if "healthcheck" in service:
            check_command(healthcheck_argv(service["healthcheck"]["test"]))
    assert seen == {
        "migrate": "manage.py migrate",
        "web": "uvicorn relay.asgi:application",
        "worker": "celery worker",
        "beat": "celery beat",
    }


def test_the_dockerfile_default_command_exists(db):
    text = DOCKERFILE.read_text()
    commands = [json.loads(m) for m in re.findall(r"^CMD (\[.*\])$", text, re.M)]
    assert len(commands) == 1
    assert check_command(commands[0]) == "uvicorn relay.asgi:application"
    for copied in re.findall(r"^COPY (?!--)(\S+) ", text, re.M):
        assert (ROOT / copied).exists(), copied


def test_every_setting_compose_passes_is_read_by_the_settings(compose):
    settings_source = (ROOT / "relay" / "settings.py").read_text()
    for name, service in ours(compose).items():
        for variable in service["environment"]:
            assert re.search(rf'env(\.\w+)?\(\s*"{variable}"', settings_source), f"{name} sets {variable}, which relay/settings.py never reads"


def test_services_wait_for_what_they_need(compose):
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["restart"] == "no"
    assert "--schedule" in services["beat"]["command"]  # beat's state file is on the writable volume


def test_the_parser_refuses_what_it_does_not_understand():
    with pytest.raises(AssertionError):
        compose_load("services:\n  web:\n    command: python manage.py\n   bad: indentation\n")
