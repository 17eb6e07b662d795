"""The demo: tenant `demo`, two channels on the offline `simulated` provider (a primary and a
backup), prices, some credit, and the demo key printed with a ready snippet. Safe to run
again: it adds what is missing and keeps the demo key, so a chat front-end set up with it keeps
working after the next `make run`; `--rotate-key` revokes it and makes a new one.

Only a key's hash is in the database, so to print the same key again the demo's secret (and
no other key's) is kept in `VAR_DIR/demo_key`, a git-ignored file readable by its owner only
(0600). When that file is missing, or holds a key this database does not know as the active
demo key (another database, a revoked key), a new key replaces the old ones.

It never undoes an operator's change to the catalog: a demo model gets its context window,
output limit and aliases only where they are unset or missing. A demo name the catalog already
uses otherwise (`demo` made a model id, or another model's alias) is left out with one line on
stderr naming what holds it, so `make run` still starts."""

import os
from pathlib import Path

from django.conf import settings

from accounts.models import ApiKey, Tenant
from accounts.selectors import key_hash
from accounts.services import api_key_create, api_key_revoke, tenant_create
from billing import services as billing
from billing.models import ExchangeRate, Price
from channels.models import BillingClass, Channel, Model
from channels.selectors import model_owning
from channels.services import channel_create, model_set
from common.cli import JsonCommand

DEMO_MODELS = {
    # public id: (context window, max output, aliases)
    "gpt-4o-mini": (128_000, 16_384, ["demo"]),
    "claude-3-5-haiku": (200_000, 8_192, []),
    "deepseek-chat": (64_000, 8_192, []),
    "text-embedding-3-small": (8_191, None, []),
}
DEMO_PRICES_USD_PER_M = {
    "gpt-4o-mini": ("0.15", "0.60"),
    "claude-3-5-haiku": ("0.80", "4.00"),
    "deepseek-chat": ("0.27", "1.10"),
    "text-embedding-3-small": ("0.02", "0"),
}


class Command(JsonCommand):
    help = "Seed the offline demo and print a demo key."

    def add_args(self, parser) -> None:
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--rotate-key", action="store_true", help="revoke the demo key and make a new one")

    def run(self, *, port, rotate_key, **_):
        tenant = Tenant.objects.filter(name="demo").first() or tenant_create(name="demo")
        models, left_out = seed_models()
        for line in left_out:
            self.stderr.write(f"seed_demo: left out {line}")
        if models and not Channel.objects.filter(name="demo-primary").exists():
            channel_create(
                name="demo-primary", provider_type="simulated", base_url="simulated://primary",
                models=[(m, m) for m in models], priority=10, options={"chunk_delay_ms": 30},
            )
        if models and not Channel.objects.filter(name="demo-backup").exists():
            channel_create(
                name="demo-backup", provider_type="simulated", base_url="simulated://backup",
                models=[(m, m) for m in models], priority=0, options={"chunk_delay_ms": 30},
            )
        if "deepseek-chat" in models and not Channel.objects.filter(name="demo-routed").exists():
            channel_create(
                name="demo-routed", provider_type="simulated", base_url="simulated://routed",
                models=[("deepseek-chat", "deepseek-chat")], priority=20, billing=BillingClass.ROUTED,
                discount_ratio="0.8", options={"chunk_delay_ms": 30},
            )
        self.seed_money(tenant, models)
        key_file = Path(settings.VAR_DIR) / "demo_key"
        key, secret = (None, "") if rotate_key else _kept_key(tenant, key_file)
        is_new_key = key is None
        if is_new_key:
            for old in ApiKey.objects.filter(tenant=tenant, name="demo", status=ApiKey.Status.ACTIVE):
                api_key_revoke(key=old)
            key, secret = api_key_create(tenant=tenant, name="demo")
            _keep_secret(key_file, secret)
        base_url = f"http://127.0.0.1:{port}/v1"
        kept = "a new key (the old demo key is revoked)" if is_new_key else "the same key as last time"
        snippet = DEMO_SNIPPET.format(key=secret, base_url=base_url, kept=kept, key_file=key_file)
        result = {
            "id": tenant.pk, "tenant": tenant.name, "key_id": key.pk, "key": secret, "base_url": base_url,
            "is_new_key": is_new_key, "key_file": str(key_file), "left_out": left_out,
        }
        return result, snippet

    def seed_money(self, tenant, models: list[str]) -> None:
        if not ExchangeRate.objects.filter(currency="CNY").exists():
            billing.exchange_rate_set(currency="CNY", units_per_usd="7.2")
        for model, (input_usd, output_usd) in DEMO_PRICES_USD_PER_M.items():
            if model in models and not Price.objects.filter(model=model).exists():
                billing.price_set(model=model, input_usd_per_m=input_usd, output_usd_per_m=output_usd)
        billing.balance_credit(tenant_id=tenant.pk, kind="credit", amount="10", idempotency_key="seed-demo:credit", note="demo credit")
        billing.balance_credit(tenant_id=tenant.pk, kind="wallet", amount="50", idempotency_key="seed-demo:wallet", note="demo wallet")


def seed_models() -> tuple[list[str], list[str]]:
    """The demo models now in the catalog, and what was left out because its name is taken."""
    models, left_out = [], []
    for public_id, (context_window, max_output, aliases) in DEMO_MODELS.items():
        holder = model_owning(name=public_id)
        if holder is not None and holder[1]:
            left_out.append(f"model {public_id!r}: it is an alias of {holder[0]}")
            continue
        model = Model.objects.filter(public_id=public_id).first()
        added = []
        for alias in aliases:
            holder = model_owning(name=alias)
            if holder is None:
                added.append(alias)
            elif holder != (public_id, True):
                taken = f"an alias of {holder[0]}" if holder[1] else "a model id"
                left_out.append(f"alias {alias!r} of {public_id}: {alias!r} is already {taken}")
        # the aliases it has and still answers to (a model id shadows an alias), and the new ones
        kept = [a for a in (model.aliases or [] if model else []) if model_owning(name=a) == (public_id, True)]
        model_set(
            public_id=public_id,
            context_window=context_window if model is None or model.context_window is None else None,
            max_output=max_output if model is None or model.max_output is None else None,
            aliases=kept + added if added else None,
        )
        models.append(public_id)
    return models, left_out


def _kept_key(tenant, key_file: Path) -> tuple[ApiKey | None, str]:
    """The active demo key whose secret the key file holds, if any."""
    try:
        secret = key_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None, ""
    key = ApiKey.objects.filter(
        tenant=tenant, name="demo", status=ApiKey.Status.ACTIVE, key_hash=key_hash(secret)
    ).first()
    return (key, secret) if key is not None else (None, "")


def _keep_secret(key_file: Path, secret: str) -> None:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    partial = key_file.with_name(key_file.name + ".tmp")
    # created 0600 from the start: the secret is never readable by others, not even briefly
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(partial, 0o600)  # O_CREAT does not narrow an existing file's mode
    os.replace(partial, key_file)


DEMO_SNIPPET = """
TokenHub demo is ready. Your demo key, {kept}
(`make run` keeps it; `manage.py seed_demo --rotate-key` replaces it):

    {key}

Try it with curl (streamed):

    curl -N {base_url}/chat/completions \\
      -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
      -d '{{"model": "gpt-4o-mini", "stream": true, "messages": [{{"role": "user", "content": "Hello!"}}]}}'

or with the openai SDK (pip install openai):

    from openai import OpenAI
    client = OpenAI(base_url="{base_url}", api_key="{key}")
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{{"role": "user", "content": "Hello!"}}])
    for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)

For the demo only, this key is kept in {key_file} (owner-only, git-ignored) so it can be
shown again; no other key is stored anywhere but as a hash.
"""
