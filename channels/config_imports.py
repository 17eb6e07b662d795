"""Other relays' configs turned into our config document (channels.configfile), which
`import_config` then applies like any other: same services, same checks, one transaction.

    document, warnings = from_one_api(channels_json, flavor="one-api")   # or "new-api"
    document, warnings = from_litellm(config_yaml_mapping)

One API / New API: their channel export is JSON, a list of channel rows (or the admin API's
`{"data": [...]}` / `{"data": {"items": [...]}}`), each with `type` (an integer code: the two
projects agree on the low codes and disagree above about 27, hence `flavor`), `name`, `key`
(New API: several keys, one a line), `base_url` (the host root: they add `/v1/...` themselves),
`models` (comma list of public names), `model_mapping` (JSON text: public name -> upstream
name), `group` (comma list), `priority` (higher first, as ours), `weight`, `status` (1 is
enabled) and, for Azure, `other` (the API version). Disabled channels and types we cannot
speak to are skipped with a warning; nothing is guessed silently.

LiteLLM: `model_list` of `{model_name, litellm_params: {model: "<provider>/<name>", api_base,
api_key, api_version, weight}, model_info: {input_cost_per_token, output_cost_per_token}}`.
Deployments that share an upstream account (provider, base URL and key) become one channel;
`api_key: os.environ/NAME` becomes `api_key_env: NAME`, so the key stays out of the file.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from providers.brands import BRANDS

__all__ = ["FORMATS", "detect_format", "from_litellm", "from_one_api"]

FORMATS = ("tokenhub", "one-api", "new-api", "litellm")

# code -> (our provider type, brand, default base URL). Only types that speak OpenAI chat,
# Anthropic Messages or Gemini; the rest are skipped with a warning.
_OPENAI = "https://api.openai.com"
_COMMON = {
    1: ("openai", "openai", _OPENAI),
    3: ("openai", "azure", ""),
    6: ("openai", "", "https://api.openaimax.com"),
    7: ("openai", "", "https://api.ohmygpt.com"),
    8: ("openai", "", ""),  # custom: an OpenAI-compatible base URL
    14: ("anthropic", "", "https://api.anthropic.com"),
    20: ("openai", "openrouter", "https://openrouter.ai/api"),
    24: ("gemini", "", "https://generativelanguage.googleapis.com"),
    25: ("openai", "", "https://api.moonshot.cn"),
    31: ("openai", "", "https://api.lingyiwanwu.com"),
}
_ONE_API = {
    **_COMMON,
    2: ("openai", "", "https://oa.api2d.net"),
    4: ("openai", "", "https://api.closeai-proxy.xyz"),
    5: ("openai", "", "https://api.openai-sb.com"),
    28: ("openai", "mistral", "https://api.mistral.ai"),
    29: ("openai", "groq", "https://api.groq.com/openai"),
    30: ("openai", "ollama", "http://localhost:11434"),
    32: ("openai", "", "https://api.stepfun.com"),
    36: ("openai", "deepseek", "https://api.deepseek.com"),
    39: ("openai", "", "https://api.together.xyz"),
    44: ("openai", "", "https://api.siliconflow.cn"),
    45: ("openai", "", "https://api.x.ai"),
    50: ("openai", "", ""),  # OpenAI compatible
}
_NEW_API = {
    **_COMMON,
    4: ("openai", "ollama", "http://localhost:11434"),
    27: ("openai", "", "https://api.perplexity.ai"),
    40: ("openai", "", "https://api.siliconflow.cn"),
    42: ("openai", "mistral", "https://api.mistral.ai"),
    43: ("openai", "deepseek", "https://api.deepseek.com"),
    47: ("openai", "", ""),  # Xinference: OpenAI-compatible
    48: ("openai", "", "https://api.x.ai"),
}
_TYPES = {"one-api": _ONE_API, "new-api": _NEW_API}
_NEW_API_ONLY_FIELDS = {"tag", "channel_info", "param_override", "setting", "header_override"}


def detect_format(data) -> str:
    """Which importer fits a parsed file (JSON or YAML)."""
    if isinstance(data, dict) and "model_list" in data:
        return "litellm"
    rows = _one_api_rows(data)
    if rows is not None:
        return "new-api" if any(_NEW_API_ONLY_FIELDS & set(row) for row in rows if isinstance(row, dict)) else "one-api"
    return "tokenhub"


def _one_api_rows(data) -> list | None:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "data" in data:
        inner = data["data"]
        if isinstance(inner, dict) and isinstance(inner.get("items"), list):
            return inner["items"]
        if isinstance(inner, list):
            return inner
    return None


# --- One API / New API ------------------------------------------------------------------------


def from_one_api(data, *, flavor: str = "one-api") -> tuple[dict, list[str]]:
    rows = _one_api_rows(data)
    if rows is None:
        raise ValueError(f"a {flavor} channel export is a JSON list of channels (or {{\"data\": [...]}})")
    types = _TYPES[flavor]
    warnings: list[str] = []
    channels: dict = {}
    groups: dict = {}
    names = [str(row.get("name") or "") for row in rows if isinstance(row, dict)]
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"channel #{number} is not an object")
        label = f"channel #{number} ({row.get('name') or 'unnamed'})"
        if row.get("status", 1) != 1:
            warnings.append(f"{label}: disabled there (status {row.get('status')}), skipped")
            continue
        code = row.get("type")
        if code not in types:
            warnings.append(f"{label}: type {code!r} is not one TokenHub speaks to ({flavor} codes), skipped")
            continue
        provider_type, brand, default_base = types[code]
        base_url = str(row.get("base_url") or "").strip().rstrip("/") or default_base
        if not base_url:
            raise ValueError(f"{label}: no base_url, and type {code} has no default")
        if provider_type == "openai" and brand != "azure" and not _has_version_suffix(base_url):
            base_url += "/v1"  # they append /v1/... themselves; ours is the API root
        models = _models_with_mapping(row, label)
        if not models:
            warnings.append(f"{label}: no models, skipped")
            continue
        name = str(row.get("name") or f"channel-{row.get('id', number)}").strip()
        if names.count(name) > 1:
            name = f"{name}-{row.get('id', number)}"
        entry: dict = {"type": provider_type}
        if brand:
            entry["brand"] = brand
        entry["base_url"] = base_url
        keys = [line.strip() for line in str(row.get("key") or "").splitlines() if line.strip()]
        if keys:
            entry["api_key"] = "\n".join(keys)  # a channel holds several keys, one a line (channels.keys)
        else:
            warnings.append(f"{label}: no key in the export (set one with import_config api_key_env or the admin)")
        entry["models"] = models
        entry["priority"] = _int_field(row, "priority", label)
        entry["weight"] = max(_int_field(row, "weight", label), 1)  # theirs may be 0 ("equal"); ours starts at 1
        row_groups = [g.strip() for g in str(row.get("group") or "default").split(",") if g.strip()] or ["default"]
        entry["groups"] = row_groups
        for group in row_groups:
            groups.setdefault(group, {})
        if brand == "azure" and row.get("other"):
            entry["options"] = {"azure": {"api_version": str(row["other"])}}
        if name in channels:
            raise ValueError(f"{label}: two channels named {name!r}")
        channels[name] = entry
    return {"version": 1, "groups": groups, "channels": channels}, warnings


def _models_with_mapping(row: dict, label: str) -> list[str]:
    public = [m.strip() for m in str(row.get("models") or "").split(",") if m.strip()]
    raw = row.get("model_mapping") or ""
    mapping: dict = {}
    if isinstance(raw, dict):
        mapping = raw
    elif str(raw).strip() not in ("", "{}", "null"):
        try:
            mapping = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{label}: model_mapping is not JSON") from None
        if not isinstance(mapping, dict):
            raise ValueError(f"{label}: model_mapping must be a JSON object")
    specs = []
    for model in dict.fromkeys(public):  # keep order, drop repeats
        upstream = mapping.get(model)
        specs.append(f"{model}={upstream}" if isinstance(upstream, str) and upstream and upstream != model else model)
    return specs


def _has_version_suffix(base_url: str) -> bool:
    last = urlsplit(base_url).path.rstrip("/").rsplit("/", 1)[-1]
    return len(last) >= 2 and last[0] == "v" and last[1].isdigit()


def _int_field(row: dict, key: str, label: str) -> int:
    value = row.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{label}: {key} must be an integer (got {value!r})")
    return value


# --- LiteLLM ----------------------------------------------------------------------------------

# LiteLLM provider prefix -> (our provider type, brand, default API root)
_LITELLM = {
    "openai": ("openai", "openai", BRANDS["openai"].base_url),
    "text-completion-openai": ("openai", "openai", BRANDS["openai"].base_url),
    "azure": ("openai", "azure", ""),
    "anthropic": ("anthropic", "", "https://api.anthropic.com"),
    "gemini": ("gemini", "", "https://generativelanguage.googleapis.com"),
    "deepseek": ("openai", "deepseek", BRANDS["deepseek"].base_url),
    "mistral": ("openai", "mistral", BRANDS["mistral"].base_url),
    "groq": ("openai", "groq", BRANDS["groq"].base_url),
    "openrouter": ("openai", "openrouter", BRANDS["openrouter"].base_url),
    "hosted_vllm": ("openai", "vllm", ""),
    "ollama": ("openai", "ollama", BRANDS["ollama"].base_url),
    "ollama_chat": ("openai", "ollama", BRANDS["ollama"].base_url),
    "xai": ("openai", "", "https://api.x.ai/v1"),
    "together_ai": ("openai", "", "https://api.together.xyz/v1"),
    "perplexity": ("openai", "", "https://api.perplexity.ai"),
    "fireworks_ai": ("openai", "", "https://api.fireworks.ai/inference/v1"),
    "dashscope": ("openai", "qwen", BRANDS["qwen"].base_url),
}
_ENV_PREFIX = "os.environ/"


def from_litellm(data) -> tuple[dict, list[str]]:
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list):
        raise ValueError("a LiteLLM config has a model_list")
    warnings: list[str] = []
    accounts: dict[tuple, dict] = {}  # (type, brand, base_url, key ref, options) -> channel entry
    models: dict = {}
    prices: dict = {}
    for number, deployment in enumerate(data["model_list"], 1):
        if not isinstance(deployment, dict):
            raise ValueError(f"model_list #{number} is not a mapping")
        public_id = deployment.get("model_name")
        params = deployment.get("litellm_params") or {}
        label = f"model_list #{number} ({public_id or 'unnamed'})"
        if not isinstance(public_id, str) or not public_id or not isinstance(params, dict) or not params.get("model"):
            raise ValueError(f"{label}: needs model_name and litellm_params.model")
        if "*" in public_id:
            warnings.append(f"{label}: wildcard model names are not supported, skipped")
            continue
        prefix, _, upstream = str(params["model"]).partition("/")
        if not upstream:
            prefix, upstream = _guess_provider(prefix), prefix
        if prefix not in _LITELLM:
            warnings.append(f"{label}: provider {prefix!r} is not one TokenHub speaks to, skipped")
            continue
        provider_type, brand, default_base = _LITELLM[prefix]
        if prefix == "openai" and params.get("api_base"):
            brand = ""  # an OpenAI-compatible server elsewhere: the brand is guessed from its host
        base_url = str(params.get("api_base") or "").strip().rstrip("/") or default_base
        if not base_url:
            raise ValueError(f"{label}: {prefix} needs litellm_params.api_base")
        if prefix in ("ollama", "ollama_chat") and params.get("api_base") and not _has_version_suffix(base_url):
            base_url += "/v1"  # LiteLLM talks to Ollama's own API at the host; we use its OpenAI one
        credential = _litellm_credential(params.get("api_key"), label, warnings)
        options = {}
        if brand == "azure" and params.get("api_version"):
            options = {"azure": {"api_version": str(params["api_version"])}}
        account_key = (provider_type, brand, base_url, tuple(sorted(credential.items())), json.dumps(options, sort_keys=True))
        entry = accounts.get(account_key)
        if entry is None or any(spec.split("=", 1)[0] == public_id for spec in entry["models"]):
            # a new account, or a second deployment of the same name on it: its own channel
            entry = {"type": provider_type, **({"brand": brand} if brand else {}), "base_url": base_url, **credential, "models": []}
            if options:
                entry["options"] = options
            weight = params.get("weight")
            if isinstance(weight, int) and not isinstance(weight, bool) and weight >= 1:
                entry["weight"] = weight
            accounts[account_key if account_key not in accounts else (*account_key, number)] = entry
        entry["models"].append(public_id if upstream == public_id else f"{public_id}={upstream}")
        models.setdefault(public_id, {})
        info = deployment.get("model_info") or {}
        price = _litellm_price(info, label, warnings) if isinstance(info, dict) else None
        if price and public_id not in prices:
            prices[public_id] = price
    channels: dict = {}
    for entry in accounts.values():
        name = _channel_name(entry, channels)
        channels[name] = entry
    return {"version": 1, "models": models, "prices": prices, "channels": channels}, warnings


def _guess_provider(model: str) -> str:
    """LiteLLM's own guess for a bare model name, for the names that matter here."""
    lowered = model.lower()
    if lowered.startswith("claude"):
        return "anthropic"
    if lowered.startswith("gemini"):
        return "gemini"
    return "openai"


def _litellm_credential(value, label: str, warnings: list[str]) -> dict:
    if value in (None, ""):
        warnings.append(f"{label}: no api_key (LiteLLM would read its provider's default variable); none imported")
        return {}
    value = str(value)
    if value.startswith(_ENV_PREFIX):
        return {"api_key_env": value[len(_ENV_PREFIX):]}
    warnings.append(f"{label}: api_key is written in the file; it is imported into the vault, consider os.environ/NAME")
    return {"api_key": value}


def _litellm_price(info: dict, label: str, warnings: list[str]) -> dict | None:
    costs = {}
    for ours, theirs in (
        ("input", "input_cost_per_token"),
        ("output", "output_cost_per_token"),
        ("cached_input", "cache_read_input_token_cost"),
    ):
        if info.get(theirs) is None:
            continue
        try:
            per_m = Decimal(str(info[theirs])) * 1_000_000
        except InvalidOperation:
            raise ValueError(f"{label}: model_info.{theirs} is not a number") from None
        costs[ours] = format(per_m.normalize(), "f")
    if "input" in costs and "output" in costs:
        return costs
    if costs:
        warnings.append(f"{label}: model_info has only some costs; no price imported")
    return None


def _channel_name(entry: dict, taken: dict) -> str:
    host = urlsplit(entry["base_url"]).hostname or "upstream"
    base = f"{entry.get('brand') or entry['type']}-{host}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
