"""Vault passwords for commands: from a file or from stdin, never from an argument (which
would sit in the shell history and in every process listing)."""

from __future__ import annotations

import sys

from django.core.management.base import CommandError


def passwords_read(*, path: str | None, count: int) -> list[str]:
    """`count` passwords, one a line, from `path` ("-" or None: stdin)."""
    try:
        if path and path != "-":
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = sys.stdin.read()
    except OSError as exc:
        raise CommandError(f"cannot read the password file: {exc.strerror}") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    values = [line for line in lines if line][:count]
    if len(values) < count:
        raise CommandError(f"expected {count} password line(s) on {'the file' if path and path != '-' else 'stdin'}")
    return values
