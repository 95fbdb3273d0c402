"""No-grad forwards on the CPU (fp32) through oneDNN's matmul, on weights packed once while a model decodes;
part of the CPU fast path (called through coati/models/fast/__init__.py).

Why: torch's CPU linear layers call MKL's sgemm, which packs the weight into its blocked layout on every call,
as BLAS calls do. A decoding step multiplies a few rows (the rollout batch) by every weight of the model;
oneDNN, which torch ships for its own compiler, can pack each weight once per rollout and reuse it for all the
steps. Decoding, and the scoring forwards (unpacked: many rows, few calls), ran faster this way (see
benchmarks/README.md). Training keeps torch's matmul: oneDNN builds a kernel for each new shape, and training
sees a new sequence length at every step, which ate the gain (see benchmarks/README.md).

`onednn_linears(model)` swaps, for the span of a `with` block under no_grad, the forward of each `nn.Linear` and
GPT-2 `Conv1D` it covers for one on oneDNN; leaving the block restores the class forward. Covered is what
computes the same function: plain fp32 CPU parameters (not FSDP's DTensors or ColossalAI's), no hooks on the
module. Other modules run as written; LoRA's wrappers call an inner `nn.Linear`, which is covered. Results
differ from MKL's in the last bits (summation order), as between any two BLAS libraries.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

# Packed copies sit beside the weights while the block runs. Past this size the memory matters more than the
# milliseconds (a model that large decodes on an accelerator, where none of this applies).
MAX_PACKED_BYTES = 2 << 30


def _matmul(x: torch.Tensor, weight_out_in: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., in) @ weight_out_in (out, in, any strides, or packed).T + bias -> (..., out)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight_out_in, bias, "none", [], "")


@functools.cache
def supported() -> bool:
    """oneDNN's ops exist in this torch build and compute F.linear (checked once, on a small case)."""
    try:
        g = torch.Generator().manual_seed(0)  # not the global generator: training's random draws stay as they were
        w, b, x = (torch.randn(shape, generator=g) for shape in ((24, 16), (24,), (3, 2, 16)))
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 3)
        return bool(torch.allclose(_matmul(x, packed, b), F.linear(x, w, b), atol=1e-5)
                    and torch.allclose(_matmul(x, w.t().contiguous().t(), b), F.linear(x, w, b), atol=1e-5))
    except (AttributeError, RuntimeError):  # a build without oneDNN, or another op signature
        return False


def _covered(module: torch.nn.Module) -> bool | None:
    """None where this module keeps its own forward; else whether its weight is stored (in, out) (Conv1D)."""
    if module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__:
        return None  # hooks expect the module's own forward; "forward" set: swapped by an enclosing block
    weight = getattr(module, "weight", None)
    if type(weight) is not torch.nn.Parameter or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return None
    if type(module) is torch.nn.Linear:
        return False
    if type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers."):
        return True
    return None


@contextlib.contextmanager
def onednn_linears(model: torch.nn.Module, pack_rows: int | None = None):
    """Within the block, the model's covered linear layers run on oneDNN; with grad on, the block changes nothing.

    pack_rows: the weights will not change in the block (decoding): each is packed once, for matmuls of about
    that many rows (a hint for oneDNN's blocking; any row count gives the same result).
    """
    swapped = []
    if not torch.is_grad_enabled() and supported():
        layers = [(m, t) for m in model.modules() if (t := _covered(m)) is not None]
        if pack_rows is not None and sum(m.weight.numel() * 4 for m, _ in layers) > MAX_PACKED_BYTES:
            layers = []  # unpacked, oneDNN is no faster than MKL on a few rows: leave the model as it is
        for module, transposed in layers:
            weight = module.weight.t() if transposed else module.weight  # a view: reads the parameter's values
            if pack_rows is not None:
                weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), pack_rows)
            module.forward = functools.partial(_matmul, weight_out_in=weight, bias=module.bias)
            swapped.append(module)
    try:
        yield
    finally:
        for module in swapped:
            del module.forward  # drops the instance attribute: the class's forward is back
