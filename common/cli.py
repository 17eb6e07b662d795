"""Plumbing shared by our management commands: `--json` output, one-line errors, nothing
changed on failure (each command's work runs in one transaction)."""

from __future__ import annotations

import json
import sys

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction


class JsonCommand(BaseCommand):
    """Subclasses define `add_args(parser)` and `run(**options) -> (dict, str)`: the JSON
    object for `--json` and the line a person reads otherwise."""

    atomic = True

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line_error(message: str) -> None:
            sys.stderr.write(f"error: {message}\n")
            sys.exit(2)

        parser.error = one_line_error
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        self.add_args(parser)

    def add_args(self, parser) -> None:
        pass

    def handle(self, *args, **options):
        try:
            if self.atomic:
                with transaction.atomic():
                    result, line = self.run(**options)
            else:
                result, line = self.run(**options)
        except CommandError:
            raise
        except (ValueError, ObjectDoesNotExist, ValidationError, IntegrityError) as exc:
            raise CommandError(_one_line(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, default=str))
        elif line:
            self.stdout.write(line)

    def run(self, **options) -> tuple[dict, str]:
        raise NotImplementedError


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        text = "; ".join(exc.messages)
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
