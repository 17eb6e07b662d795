"""Plumbing shared by our management commands: `--json` output, one-line errors, nothing
changed on failure (each command's work runs in one transaction), and one audit record per
successful run of a mutating command (`is_mutating`, on unless a command says it only reads).

A command's stderr holds its one-line error and nothing else: while it runs, log records below
ERROR do not reach the console handler (the SDKs' and our own warnings about a failure the
error line already states); `-v 2` lets them through again."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import math
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction


class JsonCommand(BaseCommand):
    """Subclasses define `add_args(parser)` and `run(**options) -> (dict, str)`: the JSON
    object for `--json` and the line a person reads otherwise."""

    atomic = True
    is_mutating = True  # False: the command only reads, and leaves no audit record

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
        with _console_errors_only(unless=options.get("verbosity", 1) >= 2):
            self._handle(options)

    def _handle(self, options: dict) -> None:
        try:
            if self.atomic:
                with transaction.atomic():
                    result, line = self.run(**options)
                    self._audit(options, result)
            else:
                result, line = self.run(**options)
                self._audit(options, result)
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

    def _audit(self, options: dict, result: dict) -> None:
        if not self.is_mutating:
            return
        name = self.__module__.rsplit(".", 1)[-1]
        arguments = {k: v for k, v in options.items() if k not in _BASE_OPTIONS}
        for record in command_recorders:
            record(
                actor=cli_actor(), action=f"cli.{name}", target_type=name,
                target_id=result.get("id") if isinstance(result, dict) else None,
                before=None, after={"arguments": arguments, "result": result},
            )


# Who records a mutating command's run (inside its transaction): observability's audit log adds
# itself when Django starts (observability.apps), so this base knows no app.
command_recorders: list = []

# what every Django command accepts; not the operator's arguments
_BASE_OPTIONS = frozenset({"json", "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color", "skip_checks"})


def cli_actor() -> str:
    """`cli:<os user>`: who ran the command, as far as this machine can tell."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def _error_or_worse(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextmanager
def _console_errors_only(*, unless: bool):
    """Records below ERROR stay off the console handler (stderr) of our LOGGING meanwhile; other
    handlers (a test's capture, a file) still get them."""
    consoles = [] if unless else [h for h in logging.getLogger().handlers if h.get_name() == CONSOLE_HANDLER]
    for handler in consoles:
        handler.addFilter(_error_or_worse)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(_error_or_worse)


CONSOLE_HANDLER = "console"  # the stderr handler's name in observability.logs.logging_config


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        text = "; ".join(exc.messages)
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# Argument types (`parser.add_argument(..., type=...)`): each refuses what its column would not
# hold or what would silently mean something else, so argparse prints one line and nothing runs.

INT_MAX = 2**31 - 1  # an IntegerField on PostgreSQL: the management API's bound too


def int_arg(*, low: int, high: int = INT_MAX):
    """A whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # also past int()'s 4,300 digits
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value

    return parse


def seconds_arg(*, high: float):
    """A finite, non-negative number of seconds up to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
        if not math.isfinite(value) or not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to {high:.0f}")
        return value

    return parse


def datetime_arg(text: str) -> datetime:
    """An ISO 8601 date or time, UTC unless it says otherwise."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out instead)")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an ISO date or time (2030-01-31 or 2030-01-31T12:00+08:00)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def non_empty(text: str) -> str:
    """Text that must say something: an empty value would silently mean 'none' or 'all'."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out instead)")
    return text


def non_empty_csv(text: str) -> list[str]:
    """`a,b` as a list that names at least one item (an empty list would mean 'all')."""
    items = csv_list(text)
    if not items:
        raise argparse.ArgumentTypeError("must name at least one (leave the option out instead)")
    return items
