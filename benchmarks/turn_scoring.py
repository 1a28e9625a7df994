"""Scoring for the turn-taking benchmark (benchmarks/turn_taking.py): what one spoken item's event
timeline says (cut, late, voice-to-voice), and the per-mode summary and table. Plain functions
over client-stamped times (`_at`, seconds on the client's monotonic clock), so they are tested on
hand-made timelines.

Definitions (all client-measured, one clock):
- the turn closed at the first `agent.state` "thinking" (the Gateway sends it at the endpoint);
- false cut: the turn closed, a final transcript came or agent audio began before the item's last
  voiced sample was sent, or the item gave more than one final transcript (more than one turn);
- endpoint: "thinking" minus the last voiced sample; late: a complete sentence whose endpoint
  exceeded LATE_MS (the server's own `endpoint_delay_ms`, the silence its VAD counted, is kept
  beside it);
- voice-to-voice: the last voiced sample sent to the first agent audio byte received, as
  loadtests/latency.py measures it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

LATE_MS = 500.0
TURN_END_KEYS = (
    *("turn_end", "turn_end_confidence", "turn_end_cue", "turn_end_at_ms", "turn_end_waited_ms"),
    "endpoint_delay_ms",
)


def score_item(events: list[dict], audio_at: list[float], last_voiced_at: float) -> dict:
    """One item's figures from the events and agent audio frame arrivals that followed it."""
    closed = next((e["_at"] for e in events if e["type"] == "agent.state" and e.get("state") == "thinking"), None)
    finals = [e["_at"] for e in events if e["type"] == "transcript" and e.get("final")]
    first_audio = next((at for at in audio_at), None)
    early = [at for at in (closed, finals[0] if finals else None, first_audio) if at is not None]
    cut = any(at < last_voiced_at for at in early) or len(finals) > 1
    metrics = [e for e in events if e["type"] == "turn.metrics"]
    out = {
        "false_cut": cut,
        "turns": len(finals),
        "answered": first_audio is not None,
        "endpoint_ms": _ms(closed, last_voiced_at),
        "v2v_ms": _ms(first_audio, last_voiced_at),
        "cut_at_ms": _ms(min(early), last_voiced_at) if cut and early else None,
        "turn_metrics": [{k: m[k] for k in TURN_END_KEYS if k in m} for m in metrics],
        "ended": next((e.get("reason") for e in events if e["type"] == "session.ended"), None),
    }
    out["late"] = not cut and out["endpoint_ms"] is not None and out["endpoint_ms"] > LATE_MS
    return out


def clear_ms(events: list[dict], onset_at: float) -> float | None:
    """First voiced sample of speech over the agent to `audio.clear` arriving, ms (None: no clear)."""
    clear = next((e["_at"] for e in events if e["type"] == "audio.clear" and e["_at"] >= onset_at), None)
    return _ms(clear, onset_at)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(mode: str, rows: list[dict], barges: list[dict]) -> dict:
    """A mode's figures: rows are scored items (with `kind`), barges scored barge-ins (with `kind`
    speech, noise or backchannel, and `clear_ms`)."""
    barges = [b for b in barges if not b.get("skipped")]  # the reply ended first, or the call broke
    complete = [r for r in rows if r["kind"] == "complete"]
    fair = [r for r in complete if not r["false_cut"]]
    v2v = [r["v2v_ms"] for r in fair if r["v2v_ms"] is not None]
    ended = [r for r in fair if r["endpoint_ms"] is not None]
    speech = [b["clear_ms"] for b in barges if b["kind"] == "speech" and b["clear_ms"] is not None]
    server = [m["endpoint_delay_ms"] for r in fair for m in r["turn_metrics"][:1] if "endpoint_delay_ms" in m]
    decisions = Counter(m.get("turn_end", "absent") for r in rows for m in r["turn_metrics"])
    return {
        "mode": mode,
        "items": len(rows),
        "false_cut_rate": _rate(sum(r["false_cut"] for r in rows), len(rows)),
        "late_rate": _rate(sum(r["late"] for r in ended), len(ended)),
        "v2v_p50_ms": percentile(v2v, 50),
        "v2v_p95_ms": percentile(v2v, 95),
        "endpoint_p50_ms": percentile([r["endpoint_ms"] for r in ended], 50),
        "server_endpoint_p50_ms": percentile(server, 50),
        "barge_in_clear_p50_ms": percentile(speech, 50),
        "barge_in_clear_p95_ms": percentile(speech, 95),
        "barge_ins": sum(1 for b in barges if b["kind"] == "speech"),
        "barge_ins_cleared": len(speech),
        "noise_cleared": f"{sum(b['clear_ms'] is not None for b in barges if b['kind'] != 'speech')}"
        f"/{sum(1 for b in barges if b['kind'] != 'speech')}",
        "per_kind": {
            kind: {
                "n": len(of),
                "false_cut": sum(r["false_cut"] for r in of),
                "late": sum(r["late"] for r in of),
                "unanswered": sum(not r["answered"] for r in of),
            }
            for kind in ("complete", "paused", "digits")
            if (of := [r for r in rows if r["kind"] == kind])
        },
        "turn_end": dict(decisions) or {"absent": len(rows)},
    }


def table(summaries: list[dict]) -> str:
    def f(v, spec=".0f"):
        return "-" if v is None else format(v, spec)

    head = (
        f"{'mode':<9} {'items':>5} {'false cut':>9} {'late':>6} {'v2v P50':>7} {'P95':>5} {'endpoint':>8} "
        f"{'server':>6} {'clear P50':>9} {'P95':>5} {'noise cleared':>13}  per kind (n/cut/late/unanswered)"
    )
    lines = [head]
    for s in summaries:
        kinds = "  ".join(
            f"{k} {v['n']}/{v['false_cut']}/{v['late']}/{v['unanswered']}" for k, v in s["per_kind"].items()
        )
        lines.append(
            f"{s['mode']:<9} {s['items']:>5} {f(s['false_cut_rate'], '.1%'):>9} {f(s['late_rate'], '.1%'):>6} "
            f"{f(s['v2v_p50_ms']):>7} {f(s['v2v_p95_ms']):>5} {f(s['endpoint_p50_ms']):>8} "
            f"{f(s['server_endpoint_p50_ms']):>6} "
            f"{f(s['barge_in_clear_p50_ms']):>9} {f(s['barge_in_clear_p95_ms']):>5} "
            f"{s['noise_cleared']:>13}  {kinds}"
        )
        extra = "".join(f", {k} {s[k]}" for k in ("calls", "errors") if k in s)
        lines.append(f"{'':<9} turn_end decisions: {s['turn_end']}{extra}")
    return "\n".join(lines)


def _ms(at: float | None, since: float) -> float | None:
    return None if at is None else round((at - since) * 1000, 1)


def _rate(n: int, of: int) -> float | None:
    return n / of if of else None
