"""A ms/token cell's figures, from what the worker replied to its requests (perf.worker.Session):
the seed protocol's figures, the host CPU time and host load of every timed cycle, the GPU kernels
(or aten operators) of the profiled cycles, and the roofline."""
import statistics

from perf import evidence


def speed_figures(timed: list[dict], ttft: list[dict], memory: dict, profiled: list[dict], info: dict,
                  memory_bandwidth: float | None, new_tokens: int) -> dict:
    """timed: the `cycle` replies after the warm-up; ttft: `first_token` replies; profiled:
    `profiled_cycle` replies; info: the backend's load info. The samples of every kind of
    evidence come from perf.evidence's table."""
    tokens = [c["new_tokens"] for c in timed]
    samples = evidence.samples_from({evidence.CYCLE: timed, evidence.FIRST_TOKEN: ttft, evidence.PROFILED: profiled})
    figures = {
        "ms_per_token": statistics.median(samples["ms_per_token"]),
        "samples": samples,
        # The article's figure: total time of all cycles over all their new tokens.
        "ms_per_token_article": 1000 * sum(c["seconds"] for c in timed) / sum(tokens),
        "cycle_seconds": [c["seconds"] for c in timed],
        "new_tokens_per_cycle": tokens,
        "worker_cpus": timed[0].get("cpus") if timed else None,
        "ttft_ms": 1000 * statistics.median(t["seconds"] for t in ttft),
        "peak_memory": memory,
        "load_s": info.get("load_s"),
    }
    if any("per_rank" in c for c in timed):
        figures["per_rank"] = [c.get("per_rank") for c in timed]
    figures.update(roofline(info, timed, ttft, new_tokens, memory_bandwidth))
    if profiled:
        figures["profile"] = profile_summary(profiled)
        gpu = samples.get("gpu_decode_ms_per_step")
        if gpu and figures.get("tpot_ms"):
            figures["gpu_busy"] = statistics.median(gpu) / figures["tpot_ms"]
    return figures


def roofline(info: dict, timed: list[dict], ttft: list[dict], new_tokens: int, ceiling: float | None) -> dict:
    """A decode step reads every weight once: weight bytes / time per output token is the
    bandwidth achieved, to hold against the device's (a large copy, measured once per run)."""
    if new_tokens < 2 or not timed or not ttft:
        return {}
    tpot = (statistics.median(c["seconds"] for c in timed) - statistics.median(t["seconds"] for t in ttft)) / (new_tokens - 1)
    figures = {"tpot_ms": 1000 * tpot} if tpot > 0 else {}
    if not info.get("weight_bytes"):
        return figures
    achieved = info["weight_bytes"] / tpot / 1e9 if tpot > 0 else None
    return {**figures, "weight_gb": info["weight_bytes"] / 1e9, "weight_bandwidth_gb_s": achieved,
            "device_bandwidth_gb_s": ceiling, "bandwidth_fraction": achieved / ceiling if achieved and ceiling else None}


def profile_summary(cycles: list[dict]) -> dict:
    """What the profiled cycles of a cell (perf.profiling replies, max over ranks where there are
    several) hold beside their samples: how many, what was profiled, the counted cycle's work by
    name, and on a GPU each kernel's launches and ms per step, averaged over the cycles."""
    counted = [c for c in cycles if c.get("counted")]
    kernels = [c for c in cycles if not c.get("counted")]
    summary = {"cycles": len(kernels), "counted_cycles": len(counted), "seconds": sum(c["seconds"] for c in cycles)}
    if counted:  # the host's work by name: Python calls, aten operators, syncs, allocations, copies
        summary["counted"] = evidence.breakdowns_from(counted)
    if not kernels:
        return summary
    cycles, first = kernels, kernels[0]
    summary.update(activity=first["activity"], decode_steps=first.get("decode_steps"))
    if first["activity"] == "cuda":
        steps = first["decode_steps"]
        summary["kernels"] = {phase: _kernels(cycles, phase, steps if phase == "decode" else 1)
                              for phase in ("decode", "prefill")}
    if any(c.get("per_rank") for c in cycles):
        summary["per_rank"] = [c.get("per_rank") for c in cycles]
    return summary


def _kernels(cycles: list[dict], phase: str, steps: int) -> dict:
    names = {name for c in cycles for name in c[phase]["kernels"]}
    out = {}
    for name in sorted(names):
        launches = [c[phase]["kernels"].get(name, (0, 0.0))[0] for c in cycles]
        ms = [c[phase]["kernels"].get(name, (0, 0.0))[1] for c in cycles]
        out[name] = {"launches_per_step": statistics.mean(launches) / steps, "ms_per_step": statistics.mean(ms) / steps}
    return out
