"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Bad input from the user (a path, a flag, a data file). Printed as one line, exit code 2."""


def exit_on_user_error(main):
    """Wrap a script's main so a UserError becomes one line on stderr and exit status 2.

    Bugs still raise with their traceback; only mistakes the user can fix are shortened.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapped
