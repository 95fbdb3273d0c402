"""What a trainer does when a loss or gradient stops being a finite number."""

from __future__ import annotations

import math
import sys

from coati.errors import NonFiniteError


def finite_or_skip(value: float, what: str, step: int, skip: bool, hint: str = "") -> bool:
    """True when `value` is finite. Otherwise stop the run (NonFiniteError) or, with skip, warn and return False.

    The update of a skipped step is dropped, so the weights stay those of the last good step.
    """
    if math.isfinite(value):
        return True
    message = f"the {what} became {value} at step {step}"
    if skip:
        print(f"warning: {message}; step skipped (--skip_nonfinite)", file=sys.stderr)
        return False
    raise NonFiniteError(f"{message}; the weights of the last good step are kept (checkpoints untouched). "
                         f"{hint or 'Lower the learning rate, use fp32 or bf16 rather than fp16, or check the data'}; "
                         "--skip_nonfinite skips such steps instead")
