"""Unit tests on known inputs: correctness metrics, option parsing, launch commands, the summary table."""
import math

import pytest
import torch

from perf.correctness import first_divergence, greedy_agreement, logits_agreement
from perf import table
from perf.launcher import launch_command
from tests.conftest import REPO
from perf.options import Hostfile, OptionError, parse_batch_sizes, parse_max_memory, world_size_and_hostfile
from perf.protocol import EMBEDDED_MODEL


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) == 3
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([1, 2, 3], [7, 2, 3]) == 0


def test_greedy_agreement_is_the_mean_matching_fraction():
    got = greedy_agreement([[1, 2, 3, 4], [5, 6, 7, 8]], [[1, 2, 3, 4], [5, 6, 0, 0]])
    assert got == {"first_divergence": [4, 2], "match": 0.75}


def test_logits_agreement_on_known_distributions():
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    same = logits_agreement(ref, ref.clone())
    assert same == {"top1": 1.0, "kl": 0.0}
    other = torch.log(torch.tensor([[0.5, 0.5], [0.1, 0.9]]))
    got = logits_agreement(ref, other)
    # KL row 2: 0.9 ln 9 + 0.1 ln(1/9) = 0.8 ln 9; row 1: 0. Mean: 0.4 ln 9.
    assert got["top1"] == 0.5 and math.isclose(got["kl"], 0.4 * math.log(9), rel_tol=1e-5)


def test_parse_batch_sizes_sorts_and_dedups():
    assert parse_batch_sizes("8,1,8") == [1, 8]
    for bad in ("0", "-1", "x", "1,,2", ""):
        with pytest.raises(OptionError, match="--batch-sizes"):
            parse_batch_sizes(bad)


def test_parse_max_memory_gives_accelerates_form():
    assert parse_max_memory("0=70GiB,1=70GiB,cpu=200GiB") == {0: "70GiB", 1: "70GiB", "cpu": "200GiB"}
    assert parse_max_memory("cpu=1073741824, disk=1.5GB") == {"cpu": 1073741824, "disk": "1.5GB"}
    for bad in ("", "70GiB", "gpu0=1GiB", "-1=1GiB", "0=70G", "0=70gb", "cpu=", "cpu=1GiB,cpu=2GiB", "mps=1GiB"):
        with pytest.raises(OptionError, match="--max-memory .*0=70GiB,1=70GiB,cpu=200GiB"):
            parse_max_memory(bad)


def test_accelerate_places_the_model_within_max_memory():
    """The adapter hands --max-memory to from_pretrained: 100 KiB of CPU is too little for the
    embedded model (2.7 MB), so accelerate offloads it to disk; by default it stays on the CPU."""
    from perf.adapters import AccelerateBf16
    bounded = AccelerateBf16({"max_memory": {"cpu": "100KiB"}})  # as the worker gets it, through JSON
    info = bounded.load(str(EMBEDDED_MODEL))
    assert info["device_map"] == ["disk"] and info["max_memory"] == {"cpu": "100KiB"}
    info = AccelerateBf16({"max_memory": None}).load(str(EMBEDDED_MODEL))
    assert info["device_map"] == ["cpu"] and info["max_memory"] is None


def test_a_hostfile_gives_the_world_size_and_must_agree_with_world_size(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# DeepSpeed hostfile\n\nlocalhost slots=4\n")
    assert world_size_and_hostfile(None, str(hostfile)) == (4, Hostfile(hostfile, {"localhost": 4}))
    assert world_size_and_hostfile("4", str(hostfile)) == (4, Hostfile(hostfile, {"localhost": 4}))
    assert world_size_and_hostfile("2", None) == (2, None)
    hostfile.write_text("worker-0 slots=8\nworker-1 slots=8\n")  # two nodes: rank 0 on worker-0
    ranks, nodes = world_size_and_hostfile(None, str(hostfile))
    assert ranks == 16 and nodes.multi_node and list(nodes.hosts) == ["worker-0", "worker-1"]
    hostfile.write_text("localhost slots=4\n")
    with pytest.raises(OptionError, match="--world-size 2 but --hostfile .* has 4 slots"):
        world_size_and_hostfile("2", str(hostfile))
    bad = {"worker-0 slots=x\n": "line 1", "worker-0\n": "line 1", "a slots=1\nb slots=0\n": "line 2",
           "a slots=1\na slots=2\n": "line 2", "# nothing\n": "lists no host"}
    for text, message in bad.items():
        hostfile.write_text(text)
        with pytest.raises(OptionError, match=f"--hostfile .*{message}"):
            world_size_and_hostfile(None, str(hostfile))
    with pytest.raises(OptionError, match="--hostfile '/no/such/hostfile': cannot read"):
        world_size_and_hostfile(None, "/no/such/hostfile")
    # DeepSpeed's launcher would put the ranks on GPUs 0..N-1 whatever the set (pytest -n's share).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(OptionError, match="CUDA_VISIBLE_DEVICES='2,3': DeepSpeed's launcher would ignore"):
        world_size_and_hostfile(None, "/no/such/hostfile")


def test_launch_commands_for_one_rank_torchrun_and_deepspeed(tmp_path):
    one_host = Hostfile(tmp_path / "hostfile", {"localhost": 2})
    assert launch_command("py") == ["py", "-u", "-m", "perf.worker"]
    assert launch_command("py", 1, one_host) == ["py", "-u", "-m", "perf.worker"]
    # Several ranks: the launcher under perf.guard, which ends it and its ranks if pytest dies.
    assert launch_command("py", 2)[:2] == ["py", str(REPO / "perf" / "guard.py")]
    assert launch_command("py", 2)[5:7] == ["torch.distributed.run", "--nproc-per-node=2"]
    command = launch_command("py", 2, one_host)[2:]
    assert command[:4] == ["py", "-u", "-m", "deepspeed.launcher.runner"]
    # What the installed DeepSpeed runner makes of it:
    from deepspeed.launcher.runner import parse_args
    args = parse_args(command[4:])
    assert (args.hostfile, args.master_addr, args.module, args.no_ssh_check, args.no_local_rank) == (
        str(tmp_path / "hostfile"), "127.0.0.1", True, True, True)
    assert (args.user_script, args.user_args, args.num_gpus) == ("perf.worker", [], -1)  # the slots decide
    # Two nodes: the ranks meet on the first host, where rank 0 runs, and rank 0 connects back.
    two_nodes = Hostfile(tmp_path / "hostfile", {"worker-0": 8, "worker-1": 8})
    args = parse_args(launch_command("py", 16, two_nodes, control="head:5000")[6:])
    assert (args.master_addr, args.user_script, args.user_args) == ("worker-0", "perf.worker", ["--control=head:5000"])


def _record(records, backend, bs, test="test_ms_per_token", **fields):
    records.append({"test": test, "backend": backend, "batch_size": bs, "outcome": "passed", "reason": None, **fields})


def test_summary_table_cells():
    records = []
    _record(records, "accel_bf16", 1, ms_per_token=12.345)
    _record(records, "accel_bf16", 8, outcome="oom", reason="out of memory at bs=8")
    _record(records, "ds_fp16", 1, outcome="skipped", reason="Skipped: ds_fp16: needs CUDA")
    _record(records, "ds_fp16", 8, outcome="skipped", reason="Skipped: ds_fp16: needs CUDA")
    _record(records, "accel_bf16", None, test="test_greedy_matches_reference", outcome="failed")
    lines = table.terminal_table(records, "tiny-bloom", 100, 5)
    assert lines[1].split() == ["backend", "bs=1", "bs=8", "correctness"]
    assert lines[2].split() == ["accel_bf16", "12.35", "OOM", "FAIL:", "greedy_matches_reference"]
    assert lines[3].split() == ["ds_fp16", "skip", "[1]", "skip", "[1]", "-"]
    assert lines[4] == "[1] Skipped: ds_fp16: needs CUDA"


@pytest.mark.parametrize("cpus, ranks, shares", [
    ([4], 1, [[4]]),
    ([0, 1, 2, 3], 2, [[0, 1], [2, 3]]),
    ([0, 1, 2, 3, 4], 2, [[0, 1], [2, 3]]),  # as DeepSpeed's --bind_cores_to_rank: the remainder unused
    ([4, 5], 4, [[4], [5], [4], [5]]),  # fewer CPUs than ranks: one each, in turn
])
def test_each_rank_gets_its_share_of_cpus(cpus, ranks, shares):
    from perf.worker import rank_cpus
    assert [rank_cpus(cpus, rank, ranks) for rank in range(ranks)] == shares
