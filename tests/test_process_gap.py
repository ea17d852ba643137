"""tools/process_gap.py: the arms that tell the suite's worker from another process running its
code. What they measure counts only on the GPU (README, "Roofline and fidelity"); here, that each
arm is the process it says it is, that the rounds are balanced, and that a time limit's signal
leaves the whole rounds judged and no worker behind."""
import json
import os
import signal
import subprocess
import sys

import pytest

from perf.settings import EMBEDDED_MODEL
from tests.conftest import REPO
from tools import process_gap


def test_every_round_is_each_arm_once_and_none_starts_with_the_arm_before_it():
    arms = ["here", "worker", "no_session", "plain"]
    rounds = list(process_gap.orders(arms, 200, seed=3))
    assert all(sorted(order) == sorted(arms) for order in rounds)
    assert all(after[0] != before[-1] for before, after in zip(rounds, rounds[1:]))
    assert rounds == list(process_gap.orders(arms, 200, seed=3))  # seeded: a run can be repeated
    # Shuffled, not rotated: each arm runs before the worker in about half the rounds (a rotation
    # of four arms gives a quarter or three quarters).
    for arm in ("here", "no_session", "plain"):
        before = sum(order.index(arm) < order.index("worker") for order in rounds)
        assert 70 <= before <= 130, (arm, before)
    # Any allowed order as likely: the arm that ended a round ends the next in about a third of them
    # (one of the three other places), not half, as when it was swapped to the end.
    stays_last = sum(after[-1] == before[-1] for before, after in zip(rounds, rounds[1:]))
    assert stays_last <= 85, stays_last


class Arm:
    """Stands for one arm's process: each `cycle` takes `ms` ms/token times the round's host drift,
    and its `interrupt_at`-th call, if given, is cut short as by SIGINT."""

    arms = 3  # in a round

    def __init__(self, ms, log, interrupt_at=None):
        self.ms, self.log, self.interrupt_at = ms, log, interrupt_at

    def call(self, op, batch_size, new_tokens):
        self.log.append(self)
        if self.interrupt_at is not None and self.log.count(self) == self.interrupt_at:
            raise KeyboardInterrupt
        drift = 1 + 0.2 * ((len(self.log) - 1) // self.arms % 4)  # one drift per round (and warm-up)
        tokens = batch_size * new_tokens
        return {"seconds": self.ms * drift * tokens / 1000, "new_tokens": tokens, "host_probe_ms": 6.0 * drift}


def test_each_arm_is_compared_with_the_worker_pair_by_pair_within_rounds():
    log = []
    sides = {"here": Arm(0.95, log), "worker": Arm(1.0, log), "worker2": Arm(1.0, log)}
    result = process_gap.run_rounds(sides, 8, 10, rounds=12, seed=0)
    assert not result["interrupted"] and len(result["orders"]) == 12
    lines = {line["arm"]: line for line in process_gap.compare(result["cycles"])}
    assert set(lines) == {"here", "worker2"} and all(line["pairs"] == 12 for line in lines.values())
    # The drift moves whole rounds, so every pair within a round gives the arms' own ratio.
    assert lines["here"]["pair_ratios"] == pytest.approx([0.95] * 12, abs=1e-4)
    assert lines["worker2"]["pair_ratios"] == pytest.approx([1.0] * 12, abs=1e-4)
    assert lines["here"]["paired_ratio"] == pytest.approx(0.95, abs=1e-3)


def test_an_interrupted_round_is_dropped_and_the_whole_ones_are_kept():
    log = []
    sides = {"here": Arm(1.0, log), "worker": Arm(1.0, log, interrupt_at=5), "plain": Arm(1.0, log)}
    result = process_gap.run_rounds(sides, 8, 10, rounds=100, seed=1)
    # The warm-up is the worker's first call, so its fifth is in round 4: 3 whole rounds.
    assert result["interrupted"] and len(result["orders"]) == 3
    assert {arm: len(c) for arm, c in result["cycles"].items()} == {"here": 3, "worker": 3, "plain": 3}


def test_bad_arms_are_named_before_any_load(capsys):
    with pytest.raises(SystemExit):
        process_gap.main(["--model", str(EMBEDDED_MODEL), "--arms", "here,worker,turbo"])
    assert "--arms: unknown ['turbo']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        process_gap.main(["--model", str(EMBEDDED_MODEL), "--arms", "here,plain"])
    assert "'worker' and at least one other" in capsys.readouterr().err


def test_a_bad_model_or_backend_is_named_before_any_load(tmp_path, capsys):
    for argv, message in ((["--model", str(tmp_path / "nowhere")], "no such folder"),
                          (["--model", "synthetic:bloom-7b1"], "synthetic.ensure('synthetic:bloom-7b1', 900)"),
                          (["--model", str(EMBEDDED_MODEL), "--backend", "turbo"], "invalid choice: 'turbo'")):
        with pytest.raises(SystemExit):
            process_gap.main([*argv, "--arms", "here,worker"])
        assert message in capsys.readouterr().err


def test_on_the_embedded_model_each_arm_is_the_process_it_names_and_sigint_judges_the_rounds_so_far():
    cpu = str(min(os.sched_getaffinity(0)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "tools/process_gap.py", "--model", str(EMBEDDED_MODEL),
                             "--backend", "accel_bf16", "--new-tokens", "3", "--cpus", cpu,
                             "--arms", "here,worker,no_session,parent_env,plain"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # a group of its own, as under `timeout`
    try:
        for line in proc.stderr:
            if "the rounds begin" in line:
                break
        else:
            pytest.fail(f"no rounds began (exit {proc.wait()})")
        subprocess.run([sys.executable, "-c", "import time; time.sleep(4)"])  # a few rounds
        os.killpg(proc.pid, signal.SIGINT)  # what `timeout -s INT` does: the whole group, no_session's worker too
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == process_gap.INTERRUPTED
    *lines, last = map(json.loads, out.splitlines())
    assert [line["arm"] for line in lines] == ["here", "no_session", "parent_env", "plain"]
    assert last["interrupted"] and last["rounds"] >= 1 and all(line["pairs"] == last["rounds"] for line in lines)
    facts = last["processes"]
    here = facts["here"]
    assert all(f["cpus"] == [int(cpu)] for f in facts.values())  # the workers inherit the pinning
    assert facts["worker"]["session"] == facts["worker"]["pid"] != here["session"]
    assert facts["parent_env"]["session"] == facts["parent_env"]["pid"]
    assert facts["no_session"]["session"] == facts["plain"]["session"] == here["session"]
    assert facts["no_session"]["process_group"] == here["process_group"]
    # The repository that perf.launcher prepends to PYTHONPATH, and only that, is what parent_env lacks.
    repo = len(os.fsencode(REPO))
    if env.get("PYTHONPATH"):
        prefix = repo + len(os.pathsep)
    else:  # the worker's value is the repository alone, and a new variable when there was none
        prefix = repo + (0 if "PYTHONPATH" in env else len("PYTHONPATH=") + 1)
    assert facts["worker"]["environ_bytes"] - facts["parent_env"]["environ_bytes"] == prefix
    assert facts["no_session"]["environ_bytes"] == facts["worker"]["environ_bytes"]
    assert facts["plain"]["environ_bytes"] == facts["parent_env"]["environ_bytes"]
    # Only the workers in this group ignore the signals `timeout` sends it; each left when asked.
    ignoring = {arm for arm, f in facts.items() if f["ignored_signals"] == ["SIGINT", "SIGTERM"]}
    assert ignoring == {"no_session", "plain"} and not facts["worker"]["ignored_signals"]
    assert last["worker_exit_codes"] == {"worker": 0, "no_session": 0, "parent_env": 0, "plain": 0}
    for f in facts.values():  # every worker stopped
        if f["pid"] != here["pid"]:
            assert not os.path.exists(f"/proc/{f['pid']}")


def test_what_a_library_writes_to_stdout_goes_to_stderr_and_only_the_json_lines_to_stdout():
    # Stands for DeepSpeed's kernels, which wrote their workspace banner to fd 1 from the `here` arm.
    code = ("import os, sys; from tools import process_gap; out = process_gap.lines_out(); "
            "os.write(1, b'WorkSpace: 0x7f\\n'); print('also to stdout'); print('{}', file=out); out.close()")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout == "{}\n"
    assert done.stderr == "WorkSpace: 0x7f\nalso to stdout\n"
