"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time

# How long a rank other than 0 waits, on a mistake, for rank 0 to report it (see exit_on_user_error).
REPORT_GRACE_S = 10.0


class UserError(Exception):
    """Bad input from the user (a path, a flag, a data file). Printed as one line, exit code 2."""


class NonFiniteError(UserError):
    """A loss, a gradient norm or a model's next-token logits became inf or NaN; the message names the step."""


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived and a checkpoint was written at the step boundary."""

    def __init__(self, signame: str, checkpoint: str):
        super().__init__(f"stopped by {signame}; checkpoint in {checkpoint}")
        self.signame, self.checkpoint = signame, checkpoint


def exit_on_user_error(main):
    """Wrap a script's main so a UserError becomes one line on stderr and exit status 2, and a
    SIGTERM/SIGINT stop one line and 128 + the signal number, as shells report signals.

    Bugs still raise with their traceback; only mistakes the user can fix are shortened. Under torchrun every
    rank meets the same mistake (the checks run before any rank diverges): rank 0 alone prints it, so the line
    appears once, and every rank exits non-zero so the launcher stops. Another rank does not exit at once: the
    launcher stops all ranks when the first one fails, and a rank that fails first could take rank 0 down
    before it prints. It waits up to REPORT_GRACE_S for rank 0 to report and end the launch, then reports
    the mistake itself, naming its rank (one that rank 0 did not meet).
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            if is_first_rank():
                print(f"error: {err}", file=sys.stderr)
            else:
                _wait_for_first_rank()
                print(f"error: {err} (rank {os.environ.get('RANK')})", file=sys.stderr)
            sys.exit(2)
        except TrainingInterrupted as stop:
            if is_first_rank():
                print(f"{stop}; continue with --resume_from {stop.checkpoint} (or --resume_from latest)",
                      file=sys.stderr)
            sys.exit(130 if stop.signame == "SIGINT" else 143)

    return wrapped


def _wait_for_first_rank() -> None:
    """Sleep REPORT_GRACE_S with SIGTERM's default action back, so the launcher's stop (sent when rank 0 exits)
    ends this process at once; a checkpointer's handler would only note the signal."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(REPORT_GRACE_S)


def is_first_rank() -> bool:
    """Rank 0 of a torchrun launch, or a plain process; read from the launcher's RANK, so it answers before
    any process group exists."""
    return os.environ.get("RANK", "0") == "0"
