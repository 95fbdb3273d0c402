"""Two nodes for real: two torchrun agents, each in its own network namespace, joined by a veth pair and meeting
through the c10d rendezvous, train SFT and PPO (2 nodes x 1 process, gloo over the veth link) to the weights of
one node x 2 processes.

Needs root (or CAP_NET_ADMIN) and the `ip` tool; the tests skip, saying why, where `ip netns add` is refused.
The namespaces share this machine's filesystem, so both nodes read the same data and rank 0 writes the model
where the test reads it, as a shared filesystem does on real machines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, run_script, script_env, write_json
from safetensors.torch import load_file

# A private /30 that exists only inside the two namespaces: nothing on the host routes to it.
ADDRS = ("10.213.7.1", "10.213.7.2")
PORT = 29400  # the rendezvous endpoint on node 0; the namespaces are new, so nothing else listens there
WORDS = ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글"]
ROWS = [{"prompt": f"질문 {i}: {w}에 대해 알려 주세요.", "completion": f"{w}은 정말 좋습니다. 감사합니다 {i}."}
        for i, w in enumerate(WORDS * 2)]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def two_nodes():
    """(namespace, interface, address) of node 0 and node 1; the namespaces are always removed afterwards
    (the veth pair goes with them)."""
    if shutil.which("ip") is None:
        pytest.skip("the `ip` tool (iproute2) is not installed")
    tag = str(os.getpid())
    names, ifaces = (f"coati-n0-{tag}", f"coati-n1-{tag}"), (f"vc0-{tag}", f"vc1-{tag}")
    made = []
    try:
        for ns in names:
            res = _ip("netns", "add", ns)
            if res.returncode != 0:
                pytest.skip(f"`ip netns add` is not allowed here ({res.stderr.strip() or res.returncode}); "
                            "it needs root or CAP_NET_ADMIN")
            made.append(ns)
        steps = [("link", "add", ifaces[0], "type", "veth", "peer", "name", ifaces[1])]
        for ns, iface, addr in zip(names, ifaces, ADDRS):
            steps += [("link", "set", iface, "netns", ns), ("-n", ns, "addr", "add", f"{addr}/30", "dev", iface),
                      ("-n", ns, "link", "set", iface, "up"), ("-n", ns, "link", "set", "lo", "up")]
        for step in steps:
            res = _ip(*step)
            if res.returncode != 0:
                pytest.skip(f"`ip {' '.join(step)}` failed: {res.stderr.strip()}")
        yield list(zip(names, ifaces, ADDRS))
    finally:
        for ns in made:
            _ip("netns", "del", ns)


def run_on_two_nodes(nodes, args: list[str], timeout: int = 300) -> None:
    """`torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d` on each node, as a user types it on two
    machines. is_host tells node 0 to host the rendezvous store: torchrun decides that by matching the endpoint
    against the machine's hostname, whose address is the host's, not the veth's."""
    procs = []
    for rank, (ns, iface, addr) in enumerate(nodes):
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--node_rank", str(rank), "--nproc_per_node", "1", "--rdzv_backend", "c10d",
               "--rdzv_endpoint", f"{ADDRS[0]}:{PORT}", "--rdzv_conf", f"is_host={int(rank == 0)}",
               "--local_addr", addr, *args]
        env = dict(script_env(), GLOO_SOCKET_IFNAME=iface)  # gloo's traffic on the veth link, nowhere else
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, (_, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {rank}:\n{err[-3000:]}"
    return outs


def max_diff(a, b) -> float:
    wa, wb = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def test_sft_on_two_nodes_equals_one_node_with_two_processes(two_nodes, tiny_models, tmp_path):
    args = ["train_sft.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
            "--dataset", write_json(tmp_path / "rows.json", ROWS), "--instruction_str", "prompt",
            "--output_str", "completion", "--batch_size", "2", "--accumulation_steps", "2", "--max_epochs", "1",
            "--lr", "1e-3", "--warmup_ratio", "0"]
    outs = run_on_two_nodes(two_nodes, [*args, "--save_path", str(tmp_path / "two")])
    assert sum("[sft] done: 2 steps" in err for _, err in outs) == 1  # one rank 0 among the two nodes
    one = run_script([*args, "--save_path", str(tmp_path / "one")], nproc=2)
    assert one.returncode == 0, one.stderr[-3000:]
    initial = max_diff(tmp_path / "one", tiny_models("gpt2"))
    assert initial > 1e-4  # the runs trained: equal weights are not the untouched start
    assert max_diff(tmp_path / "two", tmp_path / "one") <= 1e-5


def test_ppo_on_two_nodes_equals_one_node_with_two_processes(two_nodes, tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from coati.checkpoint import save_tokenizer
    from coati.models.loading import load_tokenizer

    base = tiny_models("gpt2")
    rm = str(tmp_path / "rm")  # a reward-model folder as train_reward_model.py writes one, with a random head
    torch.manual_seed(0)
    scorer = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    tok = load_tokenizer(base)
    scorer.config.pad_token_id = tok.pad_token_id
    scorer.save_pretrained(rm)
    save_tokenizer(tok, rm)
    args = ["train_prompts.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain", base, "--rm_path", rm,
            "--prompt_dataset", write_json(tmp_path / "prompts.json", ROWS), "--ppo_instruction_str", "prompt",
            "--num_episodes", "2", "--num_collect_steps", "1", "--num_update_steps", "1",
            "--experience_batch_size", "2", "--train_batch_size", "2", "--max_new_tokens", "6",
            "--actor_lr", "1e-3", "--critic_lr", "1e-3"]
    run_on_two_nodes(two_nodes, [*args, "--save_path", str(tmp_path / "two")])
    one = run_script([*args, "--save_path", str(tmp_path / "one")], nproc=2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert max_diff(tmp_path / "one", base) > 1e-4
    assert max_diff(tmp_path / "two", tmp_path / "one") <= 1e-5
