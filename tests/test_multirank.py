"""Backends as several ranks (torchrun, or DeepSpeed's launcher with --hostfile) on the CPU: gloo
carries the requests, DeepSpeed ZeRO-3 runs for real; rank 0 answers pytest, the others follow."""
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, pid_alive

# DeepSpeed's CPU all-reduce keeps a buffer per rank here, named by user, master address and port.
SHM_BUFFERS = f"deepspeed_allreduce_buffer_{os.getuid()}_*"


def test_zero_with_two_ranks_counts_both_ranks_tokens_and_passes_correctness(run_perf):
    run = run_perf("--world-size", "2", "-k", "zero_bf16")
    run.result.assert_outcomes(passed=5)
    loads = run.loads()
    ranks = [load for load in loads if load["adapter"] == "perf.adapters:DeepSpeedZeroBf16"]
    assert len(ranks) == 2 and len({load["pid"] for load in ranks}) == 2  # one load per rank
    assert Counter(load["adapter"] for load in loads)["perf.adapters:Reference"] == 1  # one process
    for t in run.tests(test="test_ms_per_token"):
        assert t["new_tokens_per_cycle"] == [2 * t["batch_size"] * 5]  # 2 streams x bs x 5 tokens
        assert t["protocol"]["world_size"] == 2
    assert run.results["backends"]["zero_bf16"]["info"]["world_size"] == 2
    assert not [load for load in loads if pid_alive(load["pid"])]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to deal out")
def test_cpus_are_dealt_out_one_share_per_rank(run_perf):
    first, second = sorted(os.sched_getaffinity(0))[:2]
    run = run_perf("--world-size", "2", "-k", "zero_bf16 and ms_per_token", "--batch-sizes", "1",
                   "--cpus", f"{first},{second}")
    run.result.assert_outcomes(passed=1)
    ranks = [load for load in run.loads() if load["adapter"] == "perf.adapters:DeepSpeedZeroBf16"]
    assert sorted(load["cpus"] for load in ranks) == [[first], [second]]
    assert run.results["backends"]["zero_bf16"]["info"]["cpus"] == [first]  # rank 0's own, as observed
    # What is compared with a baseline is the set asked for: both ranks on one CPU is another run.
    assert run.results["protocol"]["cpus"] == [first, second]
    assert [t["protocol"]["cpus"] for t in run.tests(test="test_ms_per_token")] == [[first, second]]


# Two "nodes" of one slot each: DeepSpeed's runner then starts both through pdsh, here its test
# double (tests/bin/pdsh: each host's command run on this machine, no stdin, prefixed output).
HOSTFILES = {"one host": "localhost slots=2\n", "two nodes": "localhost slots=1\n127.0.0.1 slots=1\n"}


@pytest.fixture
def hostfile(request, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "hostfile").write_text(HOSTFILES[request.param])
    return tmp_path / "hostfile"


@pytest.mark.parametrize("hostfile", list(HOSTFILES), indirect=True)
def test_zero_from_a_hostfile_runs_under_deepspeeds_launcher(run_perf, hostfile):
    run = run_perf("--hostfile", str(hostfile), "-k", "zero_bf16")
    run.result.assert_outcomes(passed=5)
    info = run.results["backends"]["zero_bf16"]["info"]
    assert info["world_size"] == 2 and info["launch"][5:7] == ["deepspeed.launcher.runner", f"--hostfile={hostfile}"]
    # Over two nodes rank 0 answers through the connection it made back to pytest.
    assert any(arg.startswith("--control=") for arg in info["launch"]) == ("127.0.0.1" in hostfile.read_text())
    for t in run.tests(test="test_ms_per_token"):
        assert t["new_tokens_per_cycle"] == [2 * t["batch_size"] * 5]  # 2 streams x bs x 5 tokens
    ranks = [load for load in run.loads() if load["adapter"] == "perf.adapters:DeepSpeedZeroBf16"]
    assert len({load["pid"] for load in ranks}) == 2
    assert not [load for load in run.loads() if pid_alive(load["pid"])]


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed", "deepspeed over two nodes"])
def test_killing_rank_1_fails_the_backend_and_leaves_no_rank(run_perf, tmp_path, monkeypatch, launcher):
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "hostfile").write_text(HOSTFILES["two nodes" if "nodes" in launcher else "one host"])
    ranks = ["--world-size", "2"] if launcher == "torchrun" else ["--hostfile", str(tmp_path / "hostfile")]
    shm_before = set(Path("/dev/shm").glob(SHM_BUFFERS))
    run = run_perf("-p", "tests.doubles", *ranks, "--worker-timeout", "120",
                   "-k", "ms_per_token and double_zero_rank1_killed")
    run.result.assert_outcomes(failed=2)
    loads = run.loads()
    assert len(loads) == 2 and not [load for load in loads if pid_alive(load["pid"])]
    assert set(Path("/dev/shm").glob(SHM_BUFFERS)) <= shm_before  # nor the ranks' shared memory
    if "nodes" in launcher:
        # No launcher sees both ranks: rank 0's collective error fails the first test, and rank 0,
        # unable to follow its peer, ends the job before the second.
        assert "gloo" in run.tests()[0]["reason"]  # "Connection closed by peer", "Read error", ...
        assert [t["outcome"] for t in run.tests()] == ["failed", "worker crash"]
        return
    # Rank 0 may send its error ("...; rank 0 saw: ...") or torchrun may end the job first (seen
    # once in CI): either way the failure names a rank's death during the cycle.
    run.result.stdout.fnmatch_lines(["*double_zero_rank1_killed: a rank died during 'cycle'*", "*worker stderr (tail*"])
    assert [t["outcome"] for t in run.tests()] == ["worker crash"] * 2


def test_xdist_gives_the_same_outcomes_and_keeps_each_backend_on_one_worker(run_perf):
    select = ["-k", "accel_bf16 or ds_fp16 or zero_bf16"]
    alone = run_perf(*select)
    outcomes = {(t["test"], t["backend"], t["batch_size"]): t["outcome"] for t in alone.tests()}
    alone.load_log.unlink()
    spread = run_perf("-n", "2", *select)
    assert {(t["test"], t["backend"], t["batch_size"]): t["outcome"] for t in spread.tests()} == outcomes
    spread.result.stdout.fnmatch_lines(["*created: 2/2 workers*", "*perf results*", "accel_bf16 *ok", "zero_bf16 *ok"])
    loads = [load["adapter"] for load in spread.loads()]
    # One load per backend (its group stays on one xdist worker); the reference, once per worker that needs it.
    assert loads.count("perf.adapters:AccelerateBf16") == 1 and loads.count("perf.adapters:DeepSpeedZeroBf16") == 1
    timed = spread.tests(test="test_ms_per_token", backend="accel_bf16")
    assert all(len(t["samples"]["ms_per_token"]) == 1 for t in timed)  # measured without pytest-benchmark


def test_deepspeed_inference_over_two_ranks_shards_and_gives_the_same_greedy_tokens(tmp_path):
    """Issue: tensor parallelism with tp_size=2 on CPU (bf16, no kernel injection) against tp_size=1."""
    import json
    import sys

    from perf import protocol
    from perf.launcher import Worker
    from perf.protocol import EMBEDDED_MODEL
    infos, tokens = {}, {}
    for world in (1, 2):
        worker = Worker(f"autotp-{world}", sys.executable, [], 300, tmp_path, world_size=world)
        try:
            infos[world] = worker.call("load", adapter="tests.autotp:DeepSpeedAutoTPBf16", model=str(EMBEDDED_MODEL),
                                       options={})
            tokens[world] = worker.call("greedy", prompts=list(protocol.PROMPTS), new_tokens=100)["tokens"]
        finally:
            worker.stop()
    blocks = json.loads((EMBEDDED_MODEL / "config.json").read_text())["n_layer"]
    # Every block's 4 Linear layers and the LM head, half of each on each rank.
    assert infos[2]["world_size"] == 2 and infos[2]["sharded_layers"] == 4 * blocks + 1
    assert infos[1]["sharded_layers"] == 0
    assert infos[2]["mlp_width_per_rank"] * 2 == infos[1]["mlp_width_per_rank"]
    assert tokens[2] == tokens[1]
