"""The `rbg` command: a thin click skin over the library; user errors become `Error: ...`, exit 2."""

from __future__ import annotations

import click

from facedata.errors import UserError
from rbg.cli.bench_cmds import bench
from rbg.cli.data import data
from rbg.cli.framing_cmds import framing_group
from rbg.cli.generator_cmds import eval_group, generate, train
from rbg.cli.retrieval_cmds import index_group, query
from rbg.cli.serve_cmds import serve


class UserFacingError(click.ClickException):
    exit_code = 2


class RbgGroup(click.Group):
    """A group that turns the library's UserError into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise UserFacingError(str(exc)) from None
        except OSError as exc:  # the machine, not a bug: no permission, a full disk, a file gone meanwhile
            reason = exc.strerror or type(exc).__name__
            raise UserFacingError(f"{exc.filename}: {reason}" if exc.filename else reason) from None


@click.group(cls=RbgGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retrieval-by-generation")
def cli() -> None:
    """Retrieval by generation: edit a face's pose or accessory, then find that person in a gallery."""


# Every command is a click command of one module above, added here and nowhere else.
for command in (data, train, eval_group, generate, index_group, framing_group, query, serve, bench):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="rbg")
