"""``trailseal`` — the command group and the one place where errors become exit codes.

Exit codes: 0 ok, 1 verification failed, 2 usage or input error, 3 service unreachable/other.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from trailseal import __version__
from trailseal.core.errors import TrailsealError, VerificationError

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def exit_code(exc: BaseException) -> int:
    """Map an exception to the CLI's exit code (the only such mapping)."""
    if isinstance(exc, VerificationError):
        return EXIT_VERIFY_FAILED
    if isinstance(exc, TrailsealError | ValueError | click.UsageError | FileNotFoundError):
        return EXIT_USAGE
    return EXIT_UNAVAILABLE


class TrailsealGroup(click.Group):
    """Turns library errors into a one-line message and the mapped exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            import httpx

            if isinstance(exc, httpx.HTTPError):
                click.echo(f"error: cannot reach the server: {exc}; is `trailseal serve` running?", err=True)
                ctx.exit(EXIT_UNAVAILABLE)
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exit_code(exc))


@click.group(cls=TrailsealGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trailseal")
def cli() -> None:
    """trailseal: a tamper-evident audit trail.

    \b
    Start a server and send it an event:
      trailseal serve --data ./trailseal-data
      trailseal emit --actor alice --action iam.role.update --resource role:admin
    """


def _register() -> None:
    from trailseal.cli import (
        apikeys_cmds,
        demo,
        keys_cmds,
        log_cmds,
        migrate_cmds,
        pipeline_cmds,
        query_cmds,
        retention_cmds,
        schema_cmds,
        serve,
        verify_cmds,
    )

    for module in (serve, log_cmds, verify_cmds, demo, keys_cmds, apikeys_cmds, migrate_cmds,
                   retention_cmds, schema_cmds, pipeline_cmds, query_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
