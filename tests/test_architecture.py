"""The arrows between apps, read from the imports (docs/architecture.md): each rule is checked
over every module of the app it constrains, so a new module is covered without a new test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
