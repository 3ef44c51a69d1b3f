"""The demo world's CoLA-style acceptability task (BabyLM glue_filtered layout)."""

from __future__ import annotations

import json
import random
from pathlib import Path


from .sources import detok
from .suite import PARADIGMS, make_pairs


def write_cola(dir_: Path, n_train: int, n_valid: int, seed: int, avoid: set[str]) -> dict:
    """CoLA-style items: the good or the bad member of a fresh pair, labels about balanced."""
    dir_.mkdir(parents=True)
    rng = random.Random(f"{seed}:cola")
    per = (n_train + n_valid) // len(PARADIGMS) + 2
    pool = []
    for p in PARADIGMS:
        for good, bad, _ in make_pairs(p, per, seed, avoid, stream="cola"):
            pool.append((detok(good), detok(bad)))
    rng.shuffle(pool)
    items = []
    for good, bad in pool[: n_train + n_valid]:
        label = int(rng.random() < 0.5)
        items.append({"sentence": good if label else bad, "label": label})
    stats = {}
    for name, part in (("train", items[:n_train]), ("valid", items[n_train:])):
        lines = [json.dumps({**it, "idx": i}) + "\n" for i, it in enumerate(part)]
        (dir_ / f"cola.{name}.jsonl").write_text("".join(lines), encoding="utf-8")
        stats[name] = {"n": len(part), "positive": sum(it["label"] for it in part)}
    return stats
