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


def guarded_step(strategy, optimizer, model, *, loss: float, what: str, step: int, max_grad_norm: float,
                 skip: bool, scheduler=None, norm_what: str = "gradient norm", hint: str = "") -> bool:
    """The optimizer step every trainer takes after its backward passes, unless something is not finite.

    loss: the step's loss, already the same on every rank (so all ranks decide alike). A non-finite loss drops
    the accumulated gradients (or stops the run, see finite_or_skip); otherwise the strategy clips and steps,
    and the scheduler advances only when the gradient norm was finite too. Returns whether the loss was."""
    if not finite_or_skip(loss, what, step, skip, hint):
        strategy.zero_grad(optimizer, model)
        return False
    norm = strategy.step(optimizer, model, max_grad_norm)
    if finite_or_skip(norm, norm_what, step, skip) and scheduler is not None:
        scheduler.step()
    return True
