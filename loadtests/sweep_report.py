"""Figures of a capacity sweep: per level of concurrent calls, and per minute of a soak; the
printed table, the JSON and the plot."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from loadtests.callers import CallResult
from loadtests.latency import percentile
from loadtests.procstats import COMPONENTS, SELF, Sample, mean_cpu

TARGET_MS = 1500
SHORT = {
    "Gateway": "Gw",
    "ASR": "ASR",
    "TTS": "TTS",
    "Dialogue": "Dlg",
    "Embeddings": "Emb",
    "SessionActor": "Sess",
    "HTTP proxy": "Prox",
    "Serve controller": "Ctl",
    "Ray worker": "Wrk",
    "Ray other": "Ray",
    "sweep": "gen",
}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (nan under two distinct xs)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
    if len({x for x, _ in pairs}) < 2:
        return math.nan
    mx, my = statistics.fmean(x for x, _ in pairs), statistics.fmean(y for _, y in pairs)
    return sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs)


def full_window(calls: list[CallResult]) -> tuple[float, float] | None:
    """While every greeted call of a level was live at once: after the last greeting, before the
    first call's last turn ended (None when they never overlapped)."""
    live = [c for c in calls if c.live_at is not None and c.turns]
    if not live:
        return None
    t0, t1 = max(c.live_at for c in live), min(c.turns[-1].at for c in live)
    return (t0, t1) if t1 > t0 else None


def latency(calls: list[CallResult], kinds: tuple[str, ...]) -> list[float]:
    return [t.ms for c in calls for t in c.turns if t.kind in kinds and t.ms is not None]


def summarize(n: int, calls: list[CallResult], samples: list[Sample], full: list[Sample]) -> dict:
    """One level's figures. CPU is the mean over the level; PSS the median while all its calls
    were live (`full`; the whole level when they never were)."""
    v2v, typed = latency(calls, ("voice", "barge")), latency(calls, ("typed",))
    setup = [c.setup_ms for c in calls if c.setup_ms is not None]
    turns = [t for c in calls for t in c.turns]
    pss = [s.platform_pss_mb() for s in (full or samples)]
    cpu = mean_cpu(samples)
    return {
        "calls": n,
        "turns": len(turns),
        "answered": sum(1 for t in turns if t.ms is not None),
        "v2v_p50_ms": percentile(v2v, 50),
        "v2v_p95_ms": percentile(v2v, 95),
        "typed_p50_ms": percentile(typed, 50),
        "typed_p95_ms": percentile(typed, 95),
        "setup_p50_ms": percentile(setup, 50),
        "setup_p95_ms": percentile(setup, 95),
        "failures": sum(len(c.failures) for c in calls),
        "failure_kinds": dict(Counter(f for c in calls for f in c.failures)),
        "failed_calls": sum(1 for c in calls if c.failures),
        "drops": sum(1 for c in calls if c.dropped),
        "refusals": sum(1 for c in calls if c.refused),
        "barge_ins": sum(1 for t in turns if t.kind == "barge"),
        "barge_ins_cut": sum(1 for t in turns if t.cut),
        "cpu_pct": cpu,
        "cpu_platform_pct": sum(v for k, v in cpu.items() if k != SELF),
        "pss_total_mb": statistics.median(pss) if pss else math.nan,
        "send_lag_p95_ms": percentile([x for c in calls for x in c.send_lag_ms], 95),
        "call_details": [_call_detail(c) for c in calls],
    }


def _call_detail(c: CallResult) -> dict:
    """One call as it went, for reading a level's figures back (times relative to its dial)."""
    return {
        "caller_id": c.caller_id,
        "setup_ms": c.setup_ms,
        "close_code": c.close_code,
        "end_reason": c.end_reason,
        "failures": c.failures,
        "turns": [
            {"kind": t.kind, "ms": t.ms, "at_s": t.at - c.started, "cut": t.cut, "text": t.text, **t.server}
            for t in c.turns
        ],
    }


def per_call_mb(levels: list[dict]) -> float:
    """Memory per extra call: the slope of the platform's PSS against concurrent calls."""
    return slope([lv["calls"] for lv in levels], [lv["pss_total_mb"] for lv in levels])


def table(levels: list[dict]) -> str:
    comps = [c for c in COMPONENTS if any(c in lv["cpu_pct"] for lv in levels)]
    head = (
        f"{'calls':>5} {'turns':>7} {'v2v P50':>7} {'P95':>6} {'typed P50':>9} {'P95':>6} {'setup P50':>9} "
        f"{'P95':>6} {'fail':>4} {'drop':>4} {'refus':>5} | CPU % of a core: "
        + " ".join(f"{SHORT[c]:>4}" for c in comps)
        + f" | {'PSS MB':>6}"
    )
    lines = [head]
    for lv in levels:
        lines.append(
            f"{lv['calls']:>5} {lv['answered']:>3}/{lv['turns']:<3} "
            f"{ms(lv['v2v_p50_ms']):>7} {ms(lv['v2v_p95_ms']):>6} "
            f"{ms(lv['typed_p50_ms']):>9} {ms(lv['typed_p95_ms']):>6} {ms(lv['setup_p50_ms']):>9} "
            f"{ms(lv['setup_p95_ms']):>6} {lv['failures']:>4} {lv['drops']:>4} {lv['refusals']:>5} | "
            + " " * 17
            + " ".join(f"{lv['cpu_pct'].get(c, 0.0):>4.0f}" for c in comps)
            + f" | {lv['pss_total_mb']:>6.0f}"
        )
    if len(levels) > 1:
        lines.append(f"memory per extra call (PSS slope): {per_call_mb(levels):.1f} MB")
    return "\n".join(lines)


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def plain(obj):
    """The figures as strict JSON: nan (no sample) becomes null."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 2)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def soak_windows(calls: list[CallResult], samples: list[Sample], t0: float, minutes: int) -> list[dict]:
    """Per minute from t0: spoken-turn P50/P95 (turns that ended in it), the median PSS and the
    calls refused (1013: no warm session, or shedding) that were dialled in it."""
    out = []
    for m in range(minutes):
        lo, hi = t0 + 60 * m, t0 + 60 * (m + 1)
        v2v = [t.ms for c in calls for t in c.turns if t.kind != "typed" and t.ms is not None and lo <= t.at < hi]
        here = [s for s in samples if lo <= s.at < hi]
        pss = [s.platform_pss_mb() for s in here]
        out.append(
            {
                "minute": m,
                "turns": len(v2v),
                "v2v_p50_ms": percentile(v2v, 50),
                "v2v_p95_ms": percentile(v2v, 95),
                "pss_total_mb": statistics.median(pss) if pss else math.nan,
                # Without the session actors and workers starting for calls: how many calls are live
                # moves the total by ~50 MB a call; what is left must stay flat.
                "pss_shared_mb": statistics.median(_shared_pss(s) for s in here) if here else math.nan,
                "session_actors": statistics.median(s.procs.get("SessionActor", 0) for s in here) if here else 0,
                "pss_by_component_mb": {
                    c: round(statistics.median(s.pss_mb.get(c, 0.0) for s in here), 1)
                    for c in sorted({c for s in here for c in s.pss_mb})
                },
                "refused": sum(1 for c in calls if c.refused and lo <= c.started < hi),
            }
        )
    return out


_PER_CALL = ("SessionActor", "Ray worker")


def _shared_pss(sample: Sample) -> float:
    return sum(v for k, v in sample.pss_mb.items() if k != SELF and k not in _PER_CALL)


def soak_slopes(windows: list[dict]) -> dict:
    """Per hour: the least-squares slope of each figure over the minute windows (flat is 0)."""
    hours = [(w["minute"] + 0.5) / 60 for w in windows]
    keys = ("v2v_p50_ms", "v2v_p95_ms", "pss_total_mb", "pss_shared_mb")
    return {f"{k}_per_hour": slope(hours, [w[k] for w in windows]) for k in keys}


def soak_warmup(minutes: float) -> int:
    """Minutes left out of the settled slopes: the warm pool filling and the first calls'
    caches, a sixth of the soak, at most 5."""
    return min(5, int(minutes // 6))


def soak_table(windows: list[dict], slopes: dict, settled: dict | None = None) -> str:
    head = f"{'minute':>6} {'turns':>5} {'v2v P50':>7} {'P95':>6} {'PSS MB':>7} {'shared':>7} {'actors':>6}"
    lines = [f"{head} {'refused':>7}"]
    for w in windows:
        lines.append(
            f"{w['minute']:>6} {w['turns']:>5} {ms(w['v2v_p50_ms']):>7} {ms(w['v2v_p95_ms']):>6} "
            f"{w['pss_total_mb']:>7.0f} {w.get('pss_shared_mb', math.nan):>7.0f} {w.get('session_actors', 0):>6.0f} "
            f"{w.get('refused', 0):>7}"
        )
    lines.append("slope per hour: " + ", ".join(f"{k} {v:+.1f}" for k, v in slopes.items()))
    if settled is not None:
        lines.append("after warm-up: " + ", ".join(f"{k} {v:+.1f}" for k, v in settled.items()))
    return "\n".join(lines)


def plot(levels: list[dict], path: Path) -> None:
    """P50 and P95 against concurrent calls with the 1500 ms line; CPU per component stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [lv["calls"] for lv in levels]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(13, 5))
    for key, label, style in (
        ("v2v_p50", "voice-to-voice P50", "o-"),
        ("v2v_p95", "voice-to-voice P95", "s-"),
        ("typed_p95", "typed P95", "^--"),
        ("setup_p95", "setup P95", "x:"),
    ):
        lat.plot(n, [lv[f"{key}_ms"] for lv in levels], style, label=label)
    lat.axhline(TARGET_MS, color="red", linewidth=1, label=f"{TARGET_MS} ms")
    lat.set(xlabel="concurrent calls", ylabel="ms", title="latency against concurrent calls", xticks=n)
    lat.legend()
    bottom = np.zeros(len(n))
    colors = plt.get_cmap("tab20").colors  # more components than tab10 has colours
    for i, comp in enumerate(COMPONENTS):
        values = np.array([lv["cpu_pct"].get(comp, 0.0) for lv in levels])
        if values.any():
            cpu.bar([str(x) for x in n], values, bottom=bottom, label=comp, color=colors[i % len(colors)])
            bottom += values
    cpu.set(xlabel="concurrent calls", ylabel="% of one core", title="CPU by component (mean over the level)")
    cpu.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
