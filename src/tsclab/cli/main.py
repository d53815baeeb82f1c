"""The ``tsclab`` command: a click group and the exit-code contract.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, no
traceback); other codes are documented by the command that returns them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from tsclab import __version__
from tsclab.cli.advise_cmd import advise_command
from tsclab.cli.clocksource_cmd import clocksource_command
from tsclab.cli.demo_cmd import demo_command
from tsclab.cli.explore_cmd import explore_command
from tsclab.cli.guest_cmd import guest_group
from tsclab.cli.kvm_cmd import kvm_group
from tsclab.cli.profiles_cmd import profiles_command
from tsclab.cli.run_cmd import run_command
from tsclab.cli.scenarios_cmd import scenarios_command

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tsclab")
def cli() -> None:
    """tsclab: guest timekeeping across VM pauses, migration, snapshots and host suspend."""


cli.add_command(clocksource_command)
cli.add_command(demo_command)
cli.add_command(advise_command)
cli.add_command(profiles_command)
cli.add_command(guest_group)
cli.add_command(run_command)
cli.add_command(explore_command)
cli.add_command(scenarios_command)
cli.add_command(kvm_group)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="tsclab", standalone_mode=False)
    except click.ClickException as err:
        where = err.ctx.command_path if isinstance(err, click.UsageError) and err.ctx else "tsclab"
        click.echo(f"{where}: error: {err.format_message()}", err=True)
        return EXIT_USAGE if isinstance(err, click.UsageError) else err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.Abort:
        click.echo("tsclab: interrupted", err=True)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
