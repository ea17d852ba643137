"""A ms/token cell's figures, from what the worker replied to its requests (perf.worker.Session):
the seed protocol's figures, the host CPU time and host load of every timed cycle, the GPU kernels
(or aten operators) of the profiled cycles, and the roofline."""
import statistics


def speed_figures(timed: list[dict], ttft: list[dict], memory: dict, profiled: list[dict], info: dict,
                  memory_bandwidth: float | None, new_tokens: int) -> dict:
    """timed: the `cycle` replies after the warm-up; ttft: `first_token` replies; profiled:
    `profiled_cycle` replies; info: the backend's load info."""
    tokens = [c["new_tokens"] for c in timed]
    per_token = lambda key: [1000 * c[key] / n for c, n in zip(timed, tokens)] if all(  # noqa: E731
        c.get(key) is not None for c in timed) else []
    figures = {
        "ms_per_token": statistics.median(per_token("seconds")),
        "ms_per_token_samples": per_token("seconds"),
        # The article's figure: total time of all cycles over all their new tokens.
        "ms_per_token_article": 1000 * sum(c["seconds"] for c in timed) / sum(tokens),
        "cycle_seconds": [c["seconds"] for c in timed],
        "host_probe_ms_samples": [c["host_probe_ms"] for c in timed],
        "new_tokens_per_cycle": tokens,
        # Host time: what the worker's main thread (the decode loop) and all its threads ran on a
        # CPU, per token (the slowest rank's); host load: what kept it from running.
        "main_cpu_ms_per_token_samples": per_token("main_cpu_s"),
        "process_cpu_ms_per_token_samples": per_token("process_cpu_s"),
        "run_queue_wait_samples": _share(timed, "run_queue_wait_s"),
        "other_cpus_samples": _share(timed, "other_cpu_s"),
        "worker_cpus": timed[0].get("cpus") if timed else None,
        "ttft_ms": 1000 * statistics.median(t["seconds"] for t in ttft),
        "ttft_ms_samples": [1000 * t["seconds"] for t in ttft],
        "peak_memory": memory,
        "load_s": info.get("load_s"),
    }
    if any("per_rank" in c for c in timed):
        figures["per_rank"] = [c.get("per_rank") for c in timed]
    figures.update(roofline(info, timed, ttft, new_tokens, memory_bandwidth))
    if profiled:
        figures["profile"] = profile_summary(profiled)
        gpu = figures["profile"].get("gpu_decode_ms_per_step_samples")
        if gpu and figures.get("tpot_ms"):
            figures["gpu_busy"] = statistics.median(gpu) / figures["tpot_ms"]
    return figures


def _share(timed: list[dict], key: str) -> list[float]:
    """Seconds of `key` per second of the cycle (a share of the time, or a number of CPUs)."""
    if not timed or any(c.get(key) is None for c in timed):
        return []
    return [max(0.0, c[key]) / c["seconds"] for c in timed]


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
    """The profiled cycles of a cell (perf.profiling replies, max over ranks where there are
    several): per cycle, GPU kernel ms per decode step and of the prefill, memcpy and memset ms per
    decode step, kernel launches per decode step, aten operators per token; and each kernel's
    launches and ms per step, averaged over the cycles."""
    first = cycles[0]
    summary = {"cycles": len(cycles), "activity": first["activity"], "decode_steps": first.get("decode_steps"),
               "seconds": sum(c["seconds"] for c in cycles)}
    if first["activity"] == "cuda":
        steps = first["decode_steps"]
        summary.update({
            "gpu_decode_ms_per_step_samples": [c["decode"]["kernel_ms"] / steps for c in cycles],
            "gpu_prefill_ms_samples": [c["prefill"]["kernel_ms"] for c in cycles],
            "memcpy_ms_per_step_samples": [c["decode"]["memcpy_ms"] / steps for c in cycles],
            "memset_ms_per_step_samples": [c["decode"]["memset_ms"] / steps for c in cycles],
            "launches_per_step_samples": [c["decode"]["launches"] / steps for c in cycles],
            "kernels": {phase: _kernels(cycles, phase, steps if phase == "decode" else 1)
                        for phase in ("decode", "prefill")},
        })
    else:
        summary["aten_ops_per_token_samples"] = [c["aten_ops"] / c["new_tokens"] for c in cycles]
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
