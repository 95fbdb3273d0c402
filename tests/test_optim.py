"""build_optimizer: bf16 parameters are trained through fp32 masters (MasterWeightAdamW), exactly as fp32 AdamW
would train them, and a checkpoint carries the masters; fp32 models keep plain AdamW."""

from __future__ import annotations

import io

import pytest
import torch

from coati.optim import MasterWeightAdamW, build_optimizer


class Net(torch.nn.Module):
    """A bf16 linear layer and norm (a full fine-tune with --dtype bf16) and an fp32 head (a value head)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.LayerNorm(32))
        torch.nn.init.normal_(self.body[0].weight, std=0.02)  # as transformers initialises its linear layers
        self.body.bfloat16()
        self.head = torch.nn.Linear(32, 1)


def fp32_twin(net: Net) -> Net:
    twin = Net()
    twin.body.float()
    twin.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    return twin


def set_grads(net: Net, grads: dict) -> None:
    for name, p in net.named_parameters():
        p.grad = grads[name].to(p.dtype)


def random_grads(net: Net, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    # bf16 values, so that the model's bf16 gradients and the reference's fp32 ones are the same numbers
    return {n: torch.randn(p.shape, generator=g).bfloat16().float() for n, p in net.named_parameters()}


@pytest.mark.parametrize("chunk", [MasterWeightAdamW.CHUNK, 100])
def test_bf16_parameters_train_as_fp32_adamw_would(monkeypatch, chunk):
    monkeypatch.setattr(MasterWeightAdamW, "CHUNK", chunk)  # 100: one fp32 gradient copy per few tensors
    torch.manual_seed(0)
    net = Net()
    ref = fp32_twin(net)
    opt, ref_opt = build_optimizer(net, 1e-3, weight_decay=0.1), build_optimizer(ref, 1e-3, weight_decay=0.1)
    assert type(opt) is MasterWeightAdamW and type(ref_opt) is torch.optim.AdamW
    for step in range(5):
        grads = random_grads(net, step)
        set_grads(net, grads)
        set_grads(ref, grads)
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    master_of = {id(p): m for p, m in opt.pairs}
    for name, p in ref.named_parameters():
        mine = dict(net.named_parameters())[name]
        assert torch.equal(master_of[id(mine)], p.detach()), name  # the same arithmetic, in fp32
        assert mine.dtype == (torch.float32 if name.startswith("head") else torch.bfloat16)
        assert torch.equal(mine.detach(), p.detach().to(mine.dtype)), name  # the model holds them rounded
        assert mine.grad is None


def test_small_updates_accumulate_where_bf16_weights_would_round_them_away():
    """60 steps of lr 5e-6 (the RM's rate) in one direction move a weight by 3e-4: visible in bf16 for |w| below
    ~0.08, while each single update is under half a bf16 step for |w| above ~2e-3."""
    torch.manual_seed(0)
    net = Net()
    plain = Net()
    plain.load_state_dict(net.state_dict())
    start = net.body[0].weight.detach().clone()
    opt = build_optimizer(net, 5e-6)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=5e-6, weight_decay=0.0)  # what bf16 runs got before
    for _ in range(60):
        for model, o in ((net, opt), (plain, plain_opt)):
            set_grads(model, {n: torch.ones_like(p, dtype=torch.float32) for n, p in model.named_parameters()})
            o.step()
            o.zero_grad()
    moved = (net.body[0].weight.detach() != start).float().mean().item()
    moved_plain = (plain.body[0].weight.detach() != start).float().mean().item()
    assert moved > 0.9 and moved_plain < 0.15, (moved, moved_plain)


def test_checkpoint_carries_the_masters_and_resumes_exactly():
    torch.manual_seed(0)
    net = Net()
    opt = build_optimizer(net, 1e-3)
    for step in range(3):
        set_grads(net, random_grads(net, step))
        opt.step()
        opt.zero_grad()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # as coati.checkpoint writes it, and reads it back (weights_only)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = Net()
    resumed.load_state_dict(net.state_dict())  # the checkpoint's weights: the rounded bf16 ones
    resumed_opt = build_optimizer(resumed, 1e-3)
    resumed_opt.load_state_dict(saved)
    for (_, m), (_, r) in zip(opt.pairs, resumed_opt.pairs):
        assert torch.equal(m, r)  # the sub-bf16 part of the training so far is not lost
    for step in range(3, 5):
        for model, o in ((net, opt), (resumed, resumed_opt)):
            set_grads(model, random_grads(model, step))
            o.step()
            o.zero_grad()
    for a, b in zip(net.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_a_plain_adamw_checkpoint_starts_the_masters_from_the_loaded_weights():
    torch.manual_seed(0)
    net = Net()
    groups = [{"params": [p for p in net.parameters() if p.ndim >= 2]},
              {"params": [p for p in net.parameters() if p.ndim < 2]}]
    plain_state = torch.optim.AdamW(groups, lr=1e-3).state_dict()  # an earlier coati's bf16 run, same groups
    opt = build_optimizer(net, 1e-3)
    with torch.no_grad():
        net.body[0].weight.add_(1.0)  # the checkpoint's weights, loaded after the optimizer was built
    opt.load_state_dict(plain_state)
    assert torch.equal(opt.pairs[0][1], net.body[0].weight.detach().float())


def test_fp32_models_and_adapters_keep_plain_fused_adamw():
    net = Net()
    net.body.float()
    opt = build_optimizer(net, 1e-3)
    assert type(opt) is torch.optim.AdamW and opt.defaults["fused"]
