from channels.services import model_set
from common.cli import JsonCommand, csv_list, int_arg


class Command(JsonCommand):
    help = "Create or update a model in the catalog."

    def add_args(self, parser) -> None:
        parser.add_argument("model")
        parser.add_argument("--context-window", type=int_arg(low=1))
        parser.add_argument("--max-output", type=int_arg(low=1), help="tokens reserved when a request has no max_tokens")
        parser.add_argument("--aliases", help="a,b (replaces the current aliases)")
        visibility = parser.add_mutually_exclusive_group()
        visibility.add_argument("--hidden", action="store_true", default=None, help="leave it out of /v1/models")
        visibility.add_argument("--visible", action="store_false", dest="hidden")

    def run(self, *, model, context_window, max_output, aliases, hidden, **_):
        made = model_set(
            public_id=model,
            context_window=context_window,
            max_output=max_output,
            aliases=csv_list(aliases) if aliases is not None else None,
            is_hidden=hidden,
        )
        result = {
            "id": made.pk,
            "model": made.public_id,
            "context_window": made.context_window,
            "max_output": made.max_output,
            "aliases": made.aliases,
            "hidden": made.is_hidden,
        }
        return result, f"model {made.public_id} (id {made.pk}) saved"
