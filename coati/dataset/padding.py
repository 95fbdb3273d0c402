"""The one padding routine of every collator."""

from __future__ import annotations

import torch


def pad(seqs: list[list[int]], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists of different lengths into (B, L) int64 ids, L the longest, and a (B, L) int64 mask
    (1 on real tokens). The mask comes from the lengths, never from `ids != value`: pad may equal EOS.

    Right padding (training batches) unless `left` (prompts for generation: every row's last token in the
    last column)."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = torch.tensor(s, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask
