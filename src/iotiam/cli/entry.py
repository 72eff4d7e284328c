"""The one place where a command-line failure becomes one line on stderr and an exit code.

Both console scripts (``iotiam`` and ``iotiam-agent``) run their Typer app through
:func:`run_app`. Typer 0.29 vendors click, so its usage errors are not
``click.ClickException``: they are caught here through the public ``typer.TyperException``
they derive from. Exit codes follow click's convention: 2 for a command line that does
not parse, 1 for a refusal, 130 for an interrupt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import typer

from iotiam.cli.terminal_text import escape_controls
from iotiam.errors import IamError, InvalidInput

#: a command line that does not parse or does not make sense (click's convention)
EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class UsageError(InvalidInput):
    """Options that parse but do not go together; exits 2 like click's usage errors."""

    kind = "usage"
    title = "Usage error"


def run_app(app: typer.Typer, argv: Sequence[str] | None = None, *,
            exit_code: Callable[[IamError], int] | None = None) -> NoReturn:
    """Run ``app`` on ``argv`` and exit; any failure is one ``error:`` line on stderr."""
    try:
        code = app(args=None if argv is None else list(argv), prog_name=app.info.name,
                   standalone_mode=False)
    except UsageError as e:
        _fail(e.diagnostics(), EXIT_USAGE)
    except IamError as e:
        _fail(e.diagnostics(), exit_code(e) if exit_code else EXIT_FAILED)
    except typer.TyperException as e:
        _fail_to_parse(e)
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted", EXIT_INTERRUPTED)
    except Exception as e:  # a bug: still one line, and say it is one
        _fail(f"unexpected {type(e).__name__}: {e} (this is a bug in iotiam; please report "
              "it with the command that caused it)", EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _fail_to_parse(e: typer.TyperException) -> NoReturn:
    context = getattr(e, "ctx", None)
    message = e.format_message()
    if type(e).__name__ == "NoArgsIsHelpError":
        # a group called without a command: its help (already shown when Rich renders
        # it, else the message) is the answer, with click's usage exit code
        if message.strip():
            sys.stdout.write(message.rstrip("\n") + "\n")
        sys.exit(EXIT_USAGE)
    hint = f" (see `{context.command_path} --help`)" if context is not None else ""
    _fail(message + hint, getattr(e, "exit_code", EXIT_USAGE))


def _fail(message: str, code: int) -> NoReturn:
    # one line, and no control character of a server's or a file's text on the terminal
    sys.stderr.write(f"error: {escape_controls(' '.join(message.split()))}\n")
    sys.exit(code)
