"""The one padding routine of every collator."""

from __future__ import annotations

import torch


def padded_width(lengths, multiple_of: int | None = None) -> int:
    """The longest length, rounded up to a multiple of `multiple_of` when it is set.

    A fixed set of widths lets a GPU reuse its compiled or autotuned kernels (attention plans, cuDNN, torch.compile)
    instead of meeting a new shape with almost every batch; the extra columns are padding, masked like any other."""
    width = max(lengths)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    return width


def pad(seqs: list[list[int]], value: int, left: bool = False,
        multiple_of: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists of different lengths into (B, L) int64 ids, L the longest (rounded up to a multiple of
    `multiple_of` when set), and a (B, L) int64 mask (1 on real tokens). The mask comes from the lengths, never
    from `ids != value`: pad may equal EOS.

    Right padding (training batches) unless `left` (prompts for generation: every row's last token in the
    last column)."""
    width = padded_width(map(len, seqs), multiple_of)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = torch.tensor(s, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask
