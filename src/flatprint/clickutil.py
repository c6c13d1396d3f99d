"""Click helpers shared by the command groups."""

from __future__ import annotations

import sys

import click

from flatprint.errors import FlatprintError


class FlatprintGroup(click.Group):
    """Shows flatprint errors as one clear line (exit 1) instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FlatprintError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
