from pathlib import Path

import yaml
from django.conf import settings

from channels.config_imports import FORMATS, detect_format, from_litellm, from_one_api
from channels.configfile import config_import
from common.cli import JsonCommand


class Command(JsonCommand):
    help = (
        "Apply a config file: TokenHub YAML (export_config), a One API / New API channel export (JSON) "
        "or a LiteLLM config.yaml. One transaction; --dry-run shows what would change."
    )

    def add_args(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--format", choices=["auto", *FORMATS], default="auto")
        parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
        parser.add_argument("--no-check", action="store_false", dest="check", help="do not probe new channels' base URLs")

    def run(self, *, file, format, dry_run, check, **_):
        path = Path(file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {file!r}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)  # JSON is YAML too
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ValueError(f"{file}: not valid YAML or JSON{where}") from None
        kind = detect_format(data) if format == "auto" else format
        warnings: list[str] = []
        if kind == "litellm":
            data, warnings = from_litellm(data)
        elif kind in ("one-api", "new-api"):
            data, warnings = from_one_api(data, flavor=kind)
        elif data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: a TokenHub config is a mapping with groups, models, prices and channels")
        report = config_import(
            document=data,
            is_dry_run=dry_run,
            check_timeout_s=settings.CHANNEL_CHECK_TIMEOUT_S if check else None,
            base_dir=path.resolve().parent,
            warnings=warnings,
        )
        result = {"format": kind, **report.as_json()}
        verb = "would change" if dry_run else "changed"
        lines = [
            f"{kind}: {verb} {len(report.changes)} ({result['created']} new, {result['updated']} updated), {report.unchanged} unchanged"
        ]
        lines += [
            f"  {c['action']} {c['kind']} {c['name']}" + (f" ({', '.join(c['fields'])})" if c["action"] == "update" else "")
            for c in report.changes
        ]
        lines += [f"  warning: {w}" for w in report.warnings]
        return result, "\n".join(lines)
