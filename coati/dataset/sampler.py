"""Length-grouped sampling: batches of examples of similar length, so that little of a batch is padding."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler):
    """A shuffled order whose global batches (batch_size x world_size) hold examples of similar length.

    Each epoch: a (seed, epoch) permutation, cut into mega-batches of 32 global batches; each mega-batch sorted by
    length and cut into global batches; the global batches shuffled. Rank r takes slice r of every global batch,
    so the ranks together see exactly the global batches one process would, and a resumed run (same seed, epoch,
    position) sees the same order. The last global batch may be short; like DistributedSampler, it is padded by
    repeating examples so that every rank has the same number.
    """

    MEGA = 32

    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0):
        self.lengths, self.batch_size, self.world_size, self.rank, self.seed = lengths, batch_size, world_size, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        size = self.batch_size * self.world_size
        batches = []
        for start in range(0, len(order), size * self.MEGA):
            mega = sorted(order[start:start + size * self.MEGA], key=lambda i: -self.lengths[i])
            batches += [mega[i:i + size] for i in range(0, len(mega), size)]
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        # The short batch (if any) goes last, so every rank's batches before it are full.
        return sorted(shuffled, key=lambda b: len(b) < size)

    def __iter__(self):
        for batch in self.global_batches():
            if len(batch) % self.world_size:
                batch = batch + (batch * self.world_size)[:self.world_size - len(batch) % self.world_size]
            per_rank = len(batch) // self.world_size
            yield from batch[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.world_size)
