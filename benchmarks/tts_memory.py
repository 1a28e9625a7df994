"""Piper's memory and speed with its session bounded (the default) against onnxruntime's defaults.

    .venv/bin/python benchmarks/tts_memory.py [--sentences 300] [--rounds 2]

Each mode runs in a fresh process, the modes alternating round by round, so both see the
same machine. A process loads the voice the way a TTS replica does, synthesizes
`--sentences` sentences of 3 to 40 words with one of 80 words in the middle (a long
knowledge-base answer), and reports its USS (private memory) as it goes, then the time to
synthesize a 5-word clause (a reply's first part: what the caller waits for) and the time
per second of audio over the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

if not os.environ.get("PYTHONPATH"):  # this checkout's code, not an editable install's
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORDS = (
    "your parcel should reach you within three to five working days and any unused item may be sent back "
    "for a full refund as long as the original receipt comes with it"
).split()
LONG_AT, LONG_WORDS = 0.5, 80


def one_run(bounded: bool, sentences: int) -> dict:
    """Runs in the child process: the figures of one mode."""
    import psutil

    from deployments.tts.engine import PiperEngine

    proc = psutil.Process()

    def uss() -> float:
        return round(proc.memory_full_info().uss / 2**20, 1)

    engine = PiperEngine(bounded_memory=bounded)
    rng = random.Random(7)
    lengths = [rng.randint(3, 40) for _ in range(sentences)]
    lengths[int(sentences * LONG_AT)] = LONG_WORDS
    marks, spent, audio_s = {"loaded": uss()}, 0.0, 0.0
    for i, n in enumerate(lengths, 1):
        text = " ".join(rng.choice(WORDS) for _ in range(n)) + "."
        t0 = time.perf_counter()
        for chunk in engine.synthesize(text, engine.sample_rate):
            audio_s += len(chunk) / 2 / engine.sample_rate
        spent += time.perf_counter() - t0
        if i % max(1, sentences // 6) == 0 or n == LONG_WORDS:
            marks[f"{i}{' (80 words)' if n == LONG_WORDS else ''}"] = uss()
    clause = []
    for _ in range(60):
        text = " ".join(rng.choice(WORDS) for _ in range(5)) + ","
        t0 = time.perf_counter()
        for _chunk in engine.synthesize(text, 16000):
            pass
        clause.append(1000 * (time.perf_counter() - t0))
    clause.sort()
    return {
        "uss_mb": marks,
        "clause_p50_ms": round(statistics.median(clause), 1),
        "clause_p90_ms": round(clause[int(0.9 * len(clause))], 1),
        "ms_per_audio_s": round(1000 * spent / audio_s, 1),
        "end_uss_mb": uss(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["bounded", "defaults"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child == "bounded", args.sentences)))
        return
    results: dict[str, list[dict]] = {"bounded": [], "defaults": []}
    for r in range(args.rounds):
        for mode in ("defaults", "bounded") if r % 2 == 0 else ("bounded", "defaults"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--sentences", str(args.sentences)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[mode].append(json.loads(out.strip().splitlines()[-1]))
            row = results[mode][-1]
            print(f"round {r + 1} {mode:8s} USS MB after n sentences: {row['uss_mb']}")
    print()
    print("| mode | USS loaded | USS max | USS at end | 5-word clause P50 / P90 | ms per second of audio |")
    print("|---|---|---|---|---|---|")
    for mode, rows in results.items():
        for row in rows:
            uss = row["uss_mb"]
            print(
                f"| {mode} | {uss['loaded']} MB | {max(uss.values())} MB | {row['end_uss_mb']} MB "
                f"| {row['clause_p50_ms']} / {row['clause_p90_ms']} ms | {row['ms_per_audio_s']} |"
            )


if __name__ == "__main__":
    main()
