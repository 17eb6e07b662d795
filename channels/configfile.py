"""Config as code: channels, models, prices and groups as one YAML document (docs/config.md).

    document = config_export(include_secrets=False)     # reads only
    text = config_dump(document)                          # the YAML, stable order
    report = config_import(document=config_load(text), is_dry_run=True, check_timeout_s=5.0)

The document is the desired state of what it names; what it does not name is left alone (no
deletions). Importing goes through the same services as `add_channel`, `set_model`,
`set_price` and the admin's groups, inside one transaction: any error changes nothing, and a
dry run is the same import rolled back. An entry equal to what is stored is not written at all,
so importing twice changes nothing, and export after import gives the same YAML.

Credentials are references: `api_key_env: NAME` (read from the environment at import) or
`api_key_file: PATH` (read from that file); the channel remembers the reference so export
writes it back. An inline `api_key` is accepted and exported only with `include_secrets`.
A channel entry without any of them keeps the credential it has.

A config file may come from elsewhere (a colleague, another relay), and a channel's key is sent
to its base URL: so a reference may not name TokenHub's own secrets. `api_key_env` refuses the
variables our settings read (SECRET_KEY, DATABASE_URL, TOKENHUB_VAULT_PASSWORD, ...), and
`api_key_file` refuses files under VAR_DIR, and a file of more than one line unless every line
looks like a key (a channel may hold several keys, one a line, channels.keys; /etc/passwd and a
.env file do not look like keys). An inline `api_key` may be a list of keys or keys one a line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml
from django.conf import settings
from django.db import transaction

from billing.money import parse_micros
from billing.selectors import groups_all, price_get, prices_all
from billing.services import group_set, price_set
from vault.crypto import VaultLocked
from vault.services import secret_unseal

from .discovery import base_url_check
from .models import BillingClass, Channel, Model, ProviderType
from .services import channel_create, channel_replace, credential_text, model_set, parse_model_specs

__all__ = ["ImportReport", "config_dump", "config_export", "config_import", "config_load"]

VERSION = 1
SECTIONS = ("groups", "models", "prices", "channels")
_GROUP_KEYS = {"ratio", "mode"}
_MODEL_KEYS = {"context_window", "max_output", "aliases", "hidden"}
_PRICE_KEYS = {"input", "output", "cached_input", "cache_write", "request", "image", "second", "tiers", "free"}
_TIER_KEYS = {"above_prompt_tokens", "input", "output", "cached_input", "cache_write"}
_CREDENTIAL_KEYS = {"api_key", "api_key_env", "api_key_file"}
_CHANNEL_KEYS = {
    "type", "brand", "base_url", "models", "priority", "weight", "billing", "groups", "cost_ratio",
    "discount_ratio", "options", *_CREDENTIAL_KEYS,
}


@dataclass
class ImportReport:
    is_dry_run: bool
    changes: list[dict] = field(default_factory=list)  # {"kind", "name", "action", "fields"}
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "dry_run": self.is_dry_run,
            "created": sum(1 for c in self.changes if c["action"] == "create"),
            "updated": sum(1 for c in self.changes if c["action"] == "update"),
            "unchanged": self.unchanged,
            "changes": self.changes,
            "warnings": self.warnings,
        }


class _DryRun(Exception):
    """Raised at the end of a dry run so the transaction rolls back."""


# --- export ---------------------------------------------------------------------------------


def config_export(*, include_secrets: bool = False) -> dict:
    document: dict = {"version": VERSION}
    document["groups"] = {g.name: _group_entry(g) for g in groups_all()}
    document["models"] = {m.public_id: _model_entry(m) for m in Model.objects.order_by("public_id")}
    document["prices"] = {p.model: _price_entry(p) for p in prices_all()}
    channels = Channel.objects.order_by("name").prefetch_related("channel_models__model")
    document["channels"] = {c.name: _channel_entry(c, include_secrets=include_secrets) for c in channels}
    return document


def config_dump(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def config_load(text: str) -> dict:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValueError("the config must be a mapping with groups, models, prices and channels")
    return document


def _group_entry(group) -> dict:
    entry = {"ratio": _decimal_text(group.ratio)}
    if group.mode:
        entry["mode"] = group.mode
    return entry


def _model_entry(model: Model) -> dict:
    entry: dict = {}
    if model.context_window is not None:
        entry["context_window"] = model.context_window
    if model.max_output is not None:
        entry["max_output"] = model.max_output
    if model.aliases:
        entry["aliases"] = sorted(model.aliases)
    if model.is_hidden:
        entry["hidden"] = True
    return entry


def _price_entry(price) -> dict:
    if price.is_free:
        return {"free": True}
    entry = {"input": _usd_text(price.input_micros_per_m), "output": _usd_text(price.output_micros_per_m)}
    if price.cached_input_micros_per_m is not None:
        entry["cached_input"] = _usd_text(price.cached_input_micros_per_m)
    if price.cache_write_micros_per_m is not None:
        entry["cache_write"] = _usd_text(price.cache_write_micros_per_m)
    if price.request_micros:
        entry["request"] = _usd_text(price.request_micros)
    if price.image_micros:
        entry["image"] = _usd_text(price.image_micros)
    if price.second_micros:
        entry["second"] = _usd_text(price.second_micros)
    if price.tiers:
        entry["tiers"] = [
            {"above_prompt_tokens": tier["above_prompt_tokens"]}
            | {
                name: _usd_text(tier[f"{name}_micros_per_m"])
                for name in ("input", "output", "cached_input", "cache_write")
                if f"{name}_micros_per_m" in tier
            }
            for tier in price.tiers
        ]
    return entry


def _channel_entry(channel: Channel, *, include_secrets: bool) -> dict:
    entry: dict = {"type": channel.provider_type}
    if channel.brand and channel.brand != channel.provider_type:
        entry["brand"] = channel.brand
    entry["base_url"] = channel.base_url
    entry.update(_credential_entry(channel, include_secrets=include_secrets))
    entry["models"] = sorted(
        cm.model.public_id if cm.upstream_name == cm.model.public_id else f"{cm.model.public_id}={cm.upstream_name}"
        for cm in channel.channel_models.all()
    )
    entry["priority"] = channel.priority
    entry["weight"] = channel.weight
    entry["billing"] = channel.billing
    entry["groups"] = list(channel.groups or ["default"])
    entry["cost_ratio"] = _decimal_text(channel.cost_ratio)
    entry["discount_ratio"] = _decimal_text(channel.discount_ratio)
    if channel.options:
        entry["options"] = channel.options
    return entry


def _credential_entry(channel: Channel, *, include_secrets: bool) -> dict:
    if not channel.credential:
        return {}
    if include_secrets:
        try:
            return {"api_key": secret_unseal(token=channel.credential)}
        except VaultLocked as exc:
            raise ValueError(f"channels.{channel.name}: the credential is sealed ({exc})") from None
    kind, _, where = channel.credential_source.partition(":")
    if kind == "env":
        return {"api_key_env": where}
    if kind == "file":
        return {"api_key_file": where}
    return {}  # given inline: kept in the vault, not written out without include_secrets


def _usd_text(amount_micros: int) -> str:
    return _decimal_text(Decimal(amount_micros).scaleb(-6))


def _decimal_text(value) -> str:
    text = format(Decimal(value).normalize(), "f")
    return text


# --- import ---------------------------------------------------------------------------------


def config_import(
    *,
    document: dict,
    is_dry_run: bool = False,
    check_timeout_s: float | None = 5.0,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    warnings: list[str] | None = None,
) -> ImportReport:
    """Apply a config document; `check_timeout_s=None` skips the base URL check."""
    report = ImportReport(is_dry_run=is_dry_run, warnings=list(warnings or []))
    _check_shape(document)
    try:
        with transaction.atomic():
            _apply(document, report, check_timeout_s, os.environ if environ is None else environ, base_dir or Path.cwd())
            if is_dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _check_shape(document: dict) -> None:
    unknown = set(document) - {"version", *SECTIONS}
    if unknown:
        raise ValueError(f"unknown top-level key {sorted(unknown)[0]!r}; the config has {', '.join(SECTIONS)}")
    version = document.get("version", VERSION)
    if version != VERSION:
        raise ValueError(f"config version {version!r} is not supported (this TokenHub reads version {VERSION})")
    allowed = {"groups": _GROUP_KEYS, "models": _MODEL_KEYS, "prices": _PRICE_KEYS, "channels": _CHANNEL_KEYS}
    for section in SECTIONS:
        entries = document.get(section) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{section} must be a mapping of name to settings")
        for name, entry in entries.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"{section}: every entry needs a name (got {name!r})")
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise ValueError(f"{section}.{name} must be a mapping")
            extra = set(entry) - allowed[section]
            if extra:
                raise ValueError(f"{section}.{name}: unknown key {sorted(extra)[0]!r}")


def _apply(document: dict, report: ImportReport, check_timeout_s, environ, base_dir: Path) -> None:
    for name, entry in (document.get("groups") or {}).items():
        _located(f"groups.{name}", _apply_group, name, entry or {}, report)
    for name, entry in (document.get("models") or {}).items():
        _located(f"models.{name}", _apply_model, name, entry or {}, report)
    for name, entry in (document.get("prices") or {}).items():
        _located(f"prices.{name}", _apply_price, name, entry or {}, report)
    for name, entry in (document.get("channels") or {}).items():
        _located(f"channels.{name}", _apply_channel, name, entry or {}, report, check_timeout_s, environ, base_dir)


def _located(where: str, apply, *args) -> None:
    try:
        apply(*args)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _note(report: ImportReport, kind: str, name: str, action: str, fields: list[str]) -> None:
    if action == "unchanged":
        report.unchanged += 1
    else:
        report.changes.append({"kind": kind, "name": name, "action": action, "fields": sorted(fields)})


def _apply_group(name: str, entry: dict, report: ImportReport) -> None:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("a group name is letters, digits, - or _")
    existing = next((g for g in groups_all() if g.name == name), None)
    ratio = _decimal(_text_or_none(entry["ratio"]), "ratio") if entry.get("ratio") is not None else None
    mode = entry.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise ValueError("mode must be text")
    if existing is None:
        group_set(name=name, ratio=ratio, mode=mode)
        _note(report, "group", name, "create", sorted(entry))
        return
    changed = []
    if ratio is not None and Decimal(existing.ratio) != ratio:
        changed.append("ratio")
    if mode is not None and existing.mode != mode:
        changed.append("mode")
    if changed:
        group_set(name=name, ratio=ratio, mode=mode)
    _note(report, "group", name, "update" if changed else "unchanged", changed)


def _apply_model(public_id: str, entry: dict, report: ImportReport) -> None:
    existing = Model.objects.filter(public_id=public_id).first()
    wanted = {
        "context_window": _int_or_none(entry, "context_window"),
        "max_output": _int_or_none(entry, "max_output"),
        "aliases": sorted(_str_list(entry["aliases"], "aliases")) if "aliases" in entry else None,
        "is_hidden": _bool_or_none(entry, "hidden"),
    }
    if existing is None:
        model_set(public_id=public_id, **wanted)
        _note(report, "model", public_id, "create", [k for k, v in wanted.items() if v is not None])
        return
    current = {
        "context_window": existing.context_window,
        "max_output": existing.max_output,
        "aliases": sorted(existing.aliases or []),
        "is_hidden": existing.is_hidden,
    }
    changed = [k for k, v in wanted.items() if v is not None and current[k] != v]
    if changed:
        model_set(public_id=public_id, **{k: wanted[k] for k in changed})
    _note(report, "model", public_id, "update" if changed else "unchanged", changed)


def _apply_price(model: str, entry: dict, report: ImportReport) -> None:
    if not Model.objects.filter(public_id=model).exists():
        raise ValueError(f"unknown model {model!r}: list it under models or a channel's models")
    wanted = _price_normalized(entry)
    existing = price_get(model=model)
    if existing is not None and _price_entry(existing) == wanted:
        _note(report, "price", model, "unchanged", [])
        return
    tiers = None
    if "tiers" in entry:
        tiers = [
            {"above_prompt_tokens": int(tier["above_prompt_tokens"])}
            | {
                f"{k}_micros_per_m": parse_micros(tier[k], what=f"tier {k} price")
                for k in ("input", "output", "cached_input", "cache_write")
                if k in tier
            }
            for tier in entry["tiers"]
        ]
    price_set(
        model=model,
        input_usd_per_m=_text_or_none(entry.get("input")),
        output_usd_per_m=_text_or_none(entry.get("output")),
        cached_input_usd_per_m=_text_or_none(entry.get("cached_input")),
        cache_write_usd_per_m=_text_or_none(entry.get("cache_write")),
        request_usd=_text_or_none(entry.get("request")),
        image_usd=_text_or_none(entry.get("image")),
        second_usd=_text_or_none(entry.get("second")),
        tiers=tiers if tiers is not None else [],
        is_free=bool(entry.get("free", False)),
    )
    if existing is None:
        _note(report, "price", model, "create", sorted(entry))
    else:
        before = _price_entry(existing)
        _note(report, "price", model, "update", sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k)))


def _price_normalized(entry: dict) -> dict:
    """The entry as export would write it (so "0.150" and 0.15 compare equal)."""
    if entry.get("free"):
        return {"free": True}
    normalized = {}
    for key in ("input", "output", "cached_input", "cache_write", "request", "image", "second"):
        if entry.get(key) is not None:
            normalized[key] = _usd_text(parse_micros(_text_or_none(entry[key]), what=f"{key} price"))
    normalized.setdefault("input", "0")
    normalized.setdefault("output", "0")
    for key in ("request", "image", "second"):
        if normalized.get(key) == "0":
            del normalized[key]
    tiers = entry.get("tiers") or []
    if not isinstance(tiers, list):
        raise ValueError("tiers must be a list")
    if tiers:
        normalized["tiers"] = []
        for tier in tiers:
            if not isinstance(tier, dict) or "above_prompt_tokens" not in tier or set(tier) - _TIER_KEYS:
                raise ValueError(f"each tier needs above_prompt_tokens and only {', '.join(sorted(_TIER_KEYS - {'above_prompt_tokens'}))}")
            normalized["tiers"].append(
                {"above_prompt_tokens": int(tier["above_prompt_tokens"])}
                | {
                    k: _usd_text(parse_micros(_text_or_none(tier[k]), what=f"tier {k} price"))
                    for k in ("input", "output", "cached_input", "cache_write")
                    if k in tier
                }
            )
    return normalized


def _apply_channel(name: str, entry: dict, report: ImportReport, check_timeout_s, environ, base_dir: Path) -> None:
    provider_type = entry.get("type")
    if provider_type not in ProviderType.values:
        raise ValueError(f"type must be one of {', '.join(ProviderType.values)} (got {provider_type!r})")
    base_url = entry.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ValueError("base_url is required")
    api_key, source = _credential(entry, environ, base_dir)
    models = entry.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError("models must be a non-empty list (m1, m2=upstream_name)")
    fields = {
        "provider_type": provider_type,
        "base_url": base_url,
        "models": parse_model_specs([str(m) for m in models]),
        "brand": str(entry.get("brand") or ""),
        "priority": _int(entry, "priority", 0),
        "weight": _int(entry, "weight", 1),
        "billing": str(entry.get("billing") or BillingClass.OFFICIAL),
        "groups": _str_list(entry["groups"], "groups") if "groups" in entry else None,
        "cost_ratio": _text_or_none(entry.get("cost_ratio")) or "1",
        "discount_ratio": _text_or_none(entry.get("discount_ratio")) or "1",
        "options": entry.get("options") or {},
    }
    if not isinstance(fields["options"], dict):
        raise ValueError("options must be a mapping")
    existing = Channel.objects.filter(name=name).first()
    if existing is None:
        if check_timeout_s is not None:
            base_url_check(provider_type=provider_type, base_url=base_url, api_key=_first_key(api_key), brand=fields["brand"],
                           options=fields["options"], timeout_s=check_timeout_s)
        if api_key is None and provider_type != ProviderType.SIMULATED:
            report.warnings.append(f"channels.{name}: no credential (api_key_env, api_key_file or api_key)")
        channel_create(name=name, api_key=api_key or "", credential_source=source, **fields)
        _note(report, "channel", name, "create", sorted(entry))
        return
    before = _channel_entry(existing, include_secrets=False)
    after_fields = {**fields, "groups": fields["groups"] or ["default"], "brand": fields["brand"] or provider_type}
    changed = _channel_changes(existing, before, after_fields)
    if api_key is not None and _credential_differs(existing, api_key, source):
        changed.append("credential")
    if not changed:
        _note(report, "channel", name, "unchanged", [])
        return
    if check_timeout_s is not None and {"type", "base_url", "credential", "brand", "options"} & set(changed):
        base_url_check(provider_type=provider_type, base_url=base_url, api_key=_first_key(api_key or _current_key(existing)),
                       brand=fields["brand"], options=fields["options"], timeout_s=check_timeout_s)
    channel_replace(channel=existing, api_key=api_key if "credential" in changed else None, credential_source=source, **fields)
    _note(report, "channel", name, "update", changed)


def _channel_changes(channel: Channel, before: dict, fields: dict) -> list[str]:
    wanted_models = sorted(p if p == u else f"{p}={u}" for p, u in fields["models"])
    pairs = {
        "type": (channel.provider_type, fields["provider_type"]),
        "brand": (channel.brand or channel.provider_type, fields["brand"]),
        "base_url": (channel.base_url, fields["base_url"].rstrip("/")),
        "models": (before["models"], wanted_models),
        "priority": (channel.priority, fields["priority"]),
        "weight": (channel.weight, fields["weight"]),
        "billing": (channel.billing, fields["billing"]),
        "groups": (list(channel.groups or ["default"]), fields["groups"]),
        "cost_ratio": (Decimal(channel.cost_ratio), _decimal(fields["cost_ratio"], "cost_ratio")),
        "discount_ratio": (Decimal(channel.discount_ratio), _decimal(fields["discount_ratio"], "discount_ratio")),
        "options": (channel.options or {}, fields["options"]),
    }
    return [name for name, (old, new) in pairs.items() if old != new]


def _credential(entry: dict, environ: Mapping[str, str], base_dir: Path) -> tuple[str | None, str]:
    """(plaintext or None to keep the current one, the reference to remember)."""
    given = [key for key in _CREDENTIAL_KEYS if entry.get(key) not in (None, "")]
    if len(given) > 1:
        raise ValueError(f"give one of api_key_env, api_key_file, api_key (got {', '.join(sorted(given))})")
    if not given:
        return None, ""
    if given[0] == "api_key_env":
        name = str(entry["api_key_env"])
        if name in own_environment_names():
            raise ValueError(f"api_key_env: {name} is one of TokenHub's own settings, never a channel key")
        value = environ.get(name, "")
        if not value:
            raise ValueError(f"api_key_env: the environment variable {name} is not set")
        return _keys_checked(value, "api_key_env"), f"env:{name}"
    if given[0] == "api_key_file":
        path = Path(str(entry["api_key_file"])).expanduser()
        resolved = (path if path.is_absolute() else base_dir / path).resolve()
        if resolved.is_relative_to(Path(settings.VAR_DIR).resolve()):
            raise ValueError(f"api_key_file: {str(path)!r} is in TokenHub's own var directory, never a channel key")
        try:
            value = resolved.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"api_key_file: cannot read {str(path)!r} ({getattr(exc, 'strerror', None) or exc})") from None
        if not value:
            raise ValueError(f"api_key_file: {str(path)!r} is empty")
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        if len(lines) > 1 and not all(_KEY_LINE.fullmatch(line) for line in lines):
            raise ValueError(
                f"api_key_file: {str(path)!r} has more than one line and not every line looks like a key; "
                "a key file holds keys alone, one a line"
            )
        return _keys_checked(value, "api_key_file"), f"file:{entry['api_key_file']}"
    given = entry["api_key"]
    return _keys_checked(given if isinstance(given, list) else str(given), "api_key"), ""


# One key a line in a several-line key file: key characters only, '=' only as base64 padding.
# Refuses what a wrong path would name: /etc/passwd (':'), .env files ('=' inside), PEM (spaces).
_KEY_LINE = re.compile(r"[A-Za-z0-9._~+/|-]{8,512}=*")


def _keys_checked(value, what: str) -> str:
    try:
        return credential_text(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


_SETTINGS_FILE = Path(__file__).resolve().parent.parent / "relay" / "settings.py"
_ENV_READ = re.compile(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")


# secrets named by ARCHITECTURE.md that a setting may read by other means
_DOCUMENTED_SECRETS = frozenset({"SECRET_KEY", "TOKENHUB_VAULT_PASSWORD", "METRICS_TOKEN", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"})


def own_environment_names() -> frozenset[str]:
    """Every environment variable relay/settings.py reads: TokenHub's own configuration."""
    global _own_names
    if _own_names is None:
        _own_names = frozenset(_ENV_READ.findall(_SETTINGS_FILE.read_text())) | _DOCUMENTED_SECRETS
    return _own_names


_own_names: frozenset[str] | None = None


def _first_key(text: str | None) -> str:
    """The key a base URL check sends: the first of a channel's keys."""
    return next(iter((text or "").splitlines()), "")


def _credential_differs(channel: Channel, api_key: str, source: str) -> bool:
    if channel.credential_source != source:
        return True
    return _current_key(channel) != api_key


def _current_key(channel: Channel) -> str:
    try:
        return secret_unseal(token=channel.credential)
    except VaultLocked as exc:
        raise ValueError(f"the stored credential is sealed ({exc})") from None


def _int(entry: dict, key: str, default: int) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be an integer (got {value!r})")
    return value


def _bool_or_none(entry: dict, key: str) -> bool | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false (got {value!r})")
    return value


def _int_or_none(entry: dict, key: str) -> int | None:
    if entry.get(key) is None:
        return None
    return _int(entry, key, 0)


def _str_list(value, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must be a list of names")
    return value


def _text_or_none(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as this float: 0.15, not 0.1499999...
    return str(value)


def _decimal(value, key: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{key} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{key} {value!r} is not a finite number")
    return number
