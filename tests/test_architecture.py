"""The arrows between apps, read from the imports (docs/architecture.md): each rule is checked
over every module of the app it constrains, so a new module is covered without a new test."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from routing import journey

ROOT = Path(__file__).resolve().parent.parent
OURS = ("relay", "common", "accounts", "billing", "routing", "channels", "providers", "vault", "observability", "research")

# app -> the apps of ours it must never import
FORBIDDEN = {
    "providers": set(OURS) - {"providers"} | {"django"},
    "vault": set(OURS) - {"vault", "common"},
    "common": set(OURS) - {"common"},
    "channels": {"routing", "relay"},
    "accounts": {"routing", "relay"},
    "billing": {"routing", "relay"},
    "observability": {"routing", "relay"},
    "research": {"routing", "relay"},  # it reaches /v1 over HTTP, never through routing's code
}


def imported_tops(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def modules_of(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


# app -> whose models it never imports: it reads them through that app's selectors and changes
# them through its services (channels' health sweep, Thompson refresh, retention and admin pages
# read and write observability's logs that way).
MODELS_OFF_LIMITS = {app: {"observability"} for app in OURS if app != "observability"}


def imported_modules(path: Path) -> set[str]:
    """Every module named by an import, in full (`from observability import models` names
    `observability.models`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("app", sorted(MODELS_OFF_LIMITS))
def test_an_app_never_imports_another_apps_models_where_that_is_ruled_out(app):
    off_limits = {f"{owner}.models" for owner in MODELS_OFF_LIMITS[app]}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & off_limits)
        for path in modules_of(app)
        if imported_modules(path) & off_limits
    }
    assert not offenders, offenders


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_an_app_never_imports_what_sits_above_it(app):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_tops(path) & FORBIDDEN[app])
        for path in modules_of(app)
        if imported_tops(path) & FORBIDDEN[app]
    }
    assert not offenders, offenders


def test_only_relay_imports_routing():
    offenders = [
        str(path.relative_to(ROOT))
        for app in OURS
        if app not in ("relay", "routing")
        for path in modules_of(app)
        if "routing" in imported_tops(path)
    ]
    assert not offenders, offenders


def nested_imports(path: Path) -> list[ast.stmt]:
    """Imports inside a function or class body (module-level ones, even under `if`, are fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found += [inner for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))]
    return found


@pytest.mark.parametrize("app", ["routing", "channels"])
def test_an_import_inside_a_function_says_why_it_is_there(app):
    """Imports sit at the top; one inside a function carries a comment naming the cycle (or the
    start-up order) it works around, on its own line."""
    offenders = []
    for path in modules_of(app):
        lines = path.read_text().splitlines()
        for node in nested_imports(path):
            if "#" not in lines[node.lineno - 1]:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_no_provider_adapter_imports_another():
    """The shared HTTP toolkit is `providers.httpkit`: the Anthropic and Gemini adapters (and any
    new one) import it, never the OpenAI adapter or each other."""
    from providers.registry import get_adapter, provider_types  # the registry is the set of adapters

    adapters = {type(get_adapter(kind)).__module__.split(".")[1] for kind in provider_types()}
    assert {"openai", "anthropic", "gemini"} <= adapters
    offenders = {}
    for name in adapters:
        tree = ast.parse((ROOT / "providers" / f"{name}.py").read_text())
        imported = {
            node.module.split(".")[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("providers.")
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        }
        if (imported & adapters) - {name}:
            offenders[name] = sorted((imported & adapters) - {name})
    assert not offenders, offenders


def test_only_common_redis_talks_to_redis():
    """One Redis module: a client per event loop and one key namespace (`common.redis.key`)."""
    offenders = [
        str(path.relative_to(ROOT))
        for app in OURS
        for path in modules_of(app)
        if "redis" in imported_tops(path) and path != ROOT / "common" / "redis.py"
    ]
    assert not offenders, offenders


# tests/<dir> beyond the apps' own: each with the reason it is not filed under one app.
TESTS_SHARED = {
    "fakes": "fake upstreams on loopback (OpenAI and its variants, Anthropic, Gemini, Stripe, a vendor's account "
    "endpoints) used by the tests of every app and by the benchmarks",
}


def test_the_tests_mirror_the_apps():
    """Each directory under tests/ is an app's name (the app it tests, read from the packages
    beside manage.py) or one of TESTS_SHARED: a concern such as security or an API's protocol is
    filed under the app it attacks or serves, so every app's tests are found in one place."""
    apps = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert apps == set(OURS), "OURS no longer names every app"
    found = {path.name for path in (ROOT / "tests").iterdir() if path.is_dir() and not path.name.startswith((".", "__"))}
    strays = found - apps - set(TESTS_SHARED)
    assert not strays, f"tests/{sorted(strays)} is no app's name: move its tests under the app they test"
    for name in found:
        assert (ROOT / "tests" / name / "__init__.py").exists(), f"tests/{name} is not a package: its module names could collide"


def test_no_module_reads_a_call_through_getattr():
    """A call's values are typed and named (docs/architecture.md, "the call"): nobody guesses at
    them with getattr/hasattr/setattr."""
    found = []
    for app in OURS:
        for path in modules_of(app):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr")
                    and node.args and "call" in ast.unparse(node.args[0]).split(".")
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_each_value_of_a_call_is_written_by_its_owner_alone():
    """Outside routing/journey.py (and routing/metering.py for the meter's prompt count), no
    module assigns to a call's values: they go through the journey's functions."""
    allowed = {"routing/journey.py": None, "routing/metering.py": {"outcome.prompt_tokens"}}
    found = []
    for app in OURS:
        for path in modules_of(app):
            name = str(path.relative_to(ROOT))
            if name == "routing/journey.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
                for target in targets:
                    text = ast.unparse(target)
                    parts = text.split(".")
                    if "call" in parts[:-1]:
                        written = ".".join(parts[parts.index("call") + 1:])
                        if written not in (allowed.get(name) or ()):
                            found.append(f"{name}:{node.lineno} {text}")
    assert not found, found


def test_a_calls_identity_is_frozen_and_its_values_have_slots():
    for value in (journey.Identity, journey.Admission, journey.Decision, journey.Attempts, journey.Outcome):
        assert dataclasses.is_dataclass(value) and "__slots__" in value.__dict__, value
    call = journey.Call(journey.identity_make(request_id="req_x", policy=None, client_ip=None, endpoint="chat.completions"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.identity.request_id = "req_y"
    with pytest.raises(AttributeError):  # no new field grows on a call, nor on its values
        call.model = "gpt-x"
    with pytest.raises(AttributeError):
        call.decision.route = None
