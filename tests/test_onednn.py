"""No-grad linear layers on oneDNN (coati/models/fast/onednn.py): same outputs as torch's, swapped only where
covered, always restored."""

from __future__ import annotations

import pytest
import torch

from coati.models.fast import onednn
from coati.models.fast.onednn import onednn_linears
from coati.models.forward import causal_lm_logits
from coati.models.registry import tiny_config
from coati.models.sampling import sample
from coati.models.value import ValueModel


class Net(torch.nn.Module):
    """The three layouts covered: Linear with and without bias, and GPT-2's Conv1D (weight stored (in, out))."""

    def __init__(self):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(16, 24)
        self.b = torch.nn.Linear(24, 20, bias=False)
        self.c = Conv1D(12, 20)  # nf (out) = 12, nx (in) = 20

    def forward(self, x):
        return self.c(torch.relu(self.b(self.a(x))))

    def layers(self):
        return [self.a, self.b, self.c]


def swapped(net) -> list[bool]:
    return ["forward" in m.__dict__ for m in net.layers()]


@pytest.mark.parametrize("pack_rows", [None, 4])
def test_outputs_equal_torch_and_the_forward_is_restored(pack_rows):
    net = Net()
    x = torch.randn(16, 5, 3).transpose(0, 2)  # (3, 5, 16), not contiguous
    with torch.no_grad():
        ref = net(x)
        with onednn_linears(net, pack_rows=pack_rows):
            assert swapped(net) == [True, True, True]
            out = net(x)
            out_other_rows = net(x[:1, :2])  # the packing hint does not bind the row count
        assert swapped(net) == [False, False, False]
        assert net(x).equal(ref)  # the class forward again
    assert onednn.supported()
    assert out.shape == ref.shape == (3, 5, 12)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_other_rows, ref[:1, :2], rtol=1e-5, atol=1e-6)


def test_with_grad_on_nothing_is_swapped_and_autograd_is_torchs():
    net = Net()
    with onednn_linears(net):
        assert swapped(net) == [False, False, False]
        net(torch.randn(2, 16)).sum().backward()
    assert net.a.weight.grad is not None


def test_hooked_non_fp32_and_non_cpu_parameters_keep_their_forward():
    net = Net()
    net.a.register_forward_hook(lambda module, args, out: out * 2)
    net.b.to(torch.bfloat16)
    with torch.no_grad(), onednn_linears(net):
        assert swapped(net) == [False, False, True]
    net = Net()
    net.a.weight = torch.nn.Parameter(torch.randn(24, 16).to("meta"))
    with torch.no_grad(), onednn_linears(net):
        assert swapped(net) == [False, True, True]


def test_restored_after_an_error_and_left_alone_when_packing_is_too_large(monkeypatch):
    net = Net()
    with pytest.raises(ValueError, match="inside"), torch.no_grad(), onednn_linears(net, pack_rows=4):
        assert swapped(net) == [True, True, True]
        raise ValueError("inside")
    assert swapped(net) == [False, False, False]
    monkeypatch.setattr(onednn, "MAX_PACKED_BYTES", 16 * 24 * 4)  # smaller than the three weights together
    with torch.no_grad(), onednn_linears(net, pack_rows=4):
        assert swapped(net) == [False, False, False]
    with torch.no_grad(), onednn_linears(net):  # no packing: no copies, no cap
        assert swapped(net) == [True, True, True]


def tiny(family, tokenizer, scorer: bool = False):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = tiny_config(family, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    torch.manual_seed(0)
    if scorer:
        config.num_labels = 1
        return AutoModelForSequenceClassification.from_config(config).eval()
    return AutoModelForCausalLM.from_config(config).eval()


def prompts(tokenizer):
    enc = tokenizer(["안녕하세요 오늘", "The weather is", "짧은"], return_tensors="pt", padding=True,
                    padding_side="left")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("family", ["gpt2", "gptneox", "llama"])
def test_decoding_scoring_and_critic_values_equal_torchs_matmul(family, tokenizer, monkeypatch):
    """llama runs transformers' forward with a static cache (not the lean path): packing covers it too."""
    model = tiny(family, tokenizer)
    critic = ValueModel(tiny(family, tokenizer, scorer=True))
    ids, mask = prompts(tokenizer)

    def run():
        seqs, log_probs = sample(model, ids, mask, tokenizer, max_new_tokens=6, do_sample=False,
                                 return_log_probs=True)
        full = torch.cat([mask, torch.ones_like(seqs[:, ids.shape[1]:])], dim=1)
        with torch.no_grad():
            logits = causal_lm_logits(model, seqs, full, ids.shape[1] - 1)
            values = critic(input_ids=seqs, attention_mask=full, per_token=True)
        return seqs, log_probs, logits, values

    ours = run()
    monkeypatch.setattr(onednn, "supported", lambda: False)
    torchs = run()
    assert ours[0].equal(torchs[0])  # greedy: the same tokens
    for a, b in zip(ours[1:], torchs[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_support_check_leaves_the_global_random_state_alone():
    """It runs once, at the first no-grad forward: drawing from the global generator there shifted a training
    run's dropout masks, so a resumed run (which checks at another point) diverged from an uninterrupted one."""
    onednn.supported.cache_clear()
    state = torch.get_rng_state()
    assert onednn.supported()
    assert torch.get_rng_state().equal(state)
