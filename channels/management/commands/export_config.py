from pathlib import Path

from channels.configfile import SECTIONS, config_dump, config_export
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Write channels, models, prices and groups as YAML (credentials as references; see docs/config.md)."

    def add_args(self, parser) -> None:
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")
        parser.add_argument(
            "--include-secrets", action="store_true",
            help="write channel keys inline (api_key) instead of api_key_env/api_key_file references",
        )

    def run(self, *, output, include_secrets, **_):
        document = config_export(include_secrets=include_secrets)
        text = config_dump(document)
        counts = {section: len(document[section]) for section in SECTIONS}
        if output:
            path = Path(output)
            path.write_text(text)
            if include_secrets:
                path.chmod(0o600)
            summary = ", ".join(f"{n} {section}" for section, n in counts.items())
            return {"output": str(path), "counts": counts, "config": document}, f"wrote {summary} to {path}"
        return {"output": None, "counts": counts, "config": document}, text.rstrip("\n")
