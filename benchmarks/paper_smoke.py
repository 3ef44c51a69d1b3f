"""The paper-size smoke: its config, and the GPU-hour projection from its measurements.

    python benchmarks/paper_smoke.py config [--base config.yaml] [--overlay workflow/paper_smoke.yaml]
        [--out results/paper-smoke.yaml]
    python benchmarks/paper_smoke.py project [--smoke results/paper-smoke.yaml] [--base config.yaml]
        [--mfu 0.35] [--peak-tflops 989] [--out docs/scale.md]

``config`` lays the overlay over config.yaml: its ``training:`` keys go into EVERY pretrain
and distill run (over the run's own batch size, epochs, ...), wml runs take one mirror-descent
step per optimizer step, and only the overlay's fine-tuning tasks are kept (a deep merge
alone could not drop the others). The result is a full config: Snakemake runs it as is.

``project`` reads the smoke's Snakemake benchmark files (``max_rss``: peak memory; ``s``:
wall seconds) and the token metadata it wrote, prints per job peak memory and seconds per
token, and turns FLOP counts of the FULL config.yaml pipeline into GPU-hours on one H100 at
a stated MFU. FLOPs per token: 6N to train a model of N parameters, 2N for a forward pass
(teachers, scoring), plus the attention term 12 * layers * hidden * seq_length (x3 to train).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from babydistill import config as bdconfig  # noqa: E402
from babydistill.common import atomic_write_text  # noqa: E402
from babydistill.config.presets import preset_parameters  # noqa: E402
from babydistill.config.specs import schema  # noqa: E402

TRAINING_KEYS = {"batch_size", "grad_accum", "max_steps", "epochs", "warmup_steps", "checkpoint_every",
                 "keep_checkpoints"}
PAPER_WORDS = 10_000_000  # BabyLM strict-small: 10M words a training epoch


def smoke_config(base: dict, overlay: dict) -> dict:
    cfg = bdconfig.deep_merge(base, {k: v for k, v in overlay.items() if k != "training"})
    budget = overlay.get("training") or {}
    cfg["training"] = {**cfg["training"], **budget}
    for section in ("pretrain", "distill"):
        for run in (cfg.get(section) or {}).values():
            run.update({k: v for k, v in budget.items() if k in run or k in TRAINING_KEYS})
            if run.get("curriculum"):  # only the sources the smoke's corpus has
                cur = run["curriculum"]
                have = set(cfg["corpus"]["sources"])
                cur["buckets"] = [kept for b in cur["buckets"] if (kept := [x for x in b if x in have])]
                cur["epochs_per_bucket"] = 1  # every bucket opens within the smoke's epochs
                run["epochs"] = max(run.get("epochs", 1), len(cur["buckets"]))
            if run.get("objective") == "wml":
                run["weight_update_frequency"] = 1  # one mirror-descent step on the peer weights too
    # Each sweep: two trials on one worker, its batch sizes within the tiny budget's
    for sweep in (cfg.get("sweeps") or {}).values():
        b = budget.get("batch_size", 2)
        sweep.update(trials=2, workers=1, max_micro_batch_size=b)
        if "batch_size" in sweep["space"]:
            sweep["space"]["batch_size"] = {"low": b, "high": 2 * b}
    # Like the tasks below, only the overlay's suites: the others' data (EWoK, gated) is not
    # on this machine, and a deep merge alone could not drop them.
    suites = ((overlay.get("eval") or {}).get("blimp") or {}).get("suites")
    if suites is not None:
        cfg["eval"]["blimp"]["suites"] = {
            s: bdconfig.deep_merge(base["eval"]["blimp"]["suites"].get(s) or {}, over)
            for s, over in suites.items()}
        for table in ((cfg.get("tables") or {}).get("paper") or {}).values():
            if "suites" in table:
                table["suites"] = [s for s in table["suites"] if s in suites]
    tasks = ((overlay.get("eval") or {}).get("finetune") or {}).get("tasks")
    if tasks is not None:
        if not any(t.startswith("msgs_") for t in tasks):  # then no MSGS download either
            cfg["eval"]["finetune"].pop("msgs", None)
        cfg["eval"]["finetune"]["tasks"] = {
            t: bdconfig.deep_merge(base["eval"]["finetune"]["tasks"][t], over) for t, over in tasks.items()}
        for table in ((cfg.get("tables") or {}).get("paper") or {}).values():
            for key in ("tasks", "unstable"):  # the paper tables name only the kept tasks
                if key in table:
                    table[key] = [t for t in table[key] if t in tasks]
    bdconfig.validate(cfg, "paper smoke config")
    return cfg


def read_bench(path: Path) -> dict:
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    row = rows[-1]
    num = lambda k: float(row[k]) if row.get(k) not in (None, "", "NA", "-") else None  # noqa: E731
    return {"s": float(row["s"]), "max_rss_mb": num("max_rss"), "cpu_s": num("cpu_time"),
            "io_out_mb": num("io_out")}


def train_flops_per_token(preset: dict, vocab: int, seq: int) -> tuple[int, float]:
    n = preset_parameters(preset, vocab)
    attn = 12 * preset["num_layers"] * preset["hidden_size"] * seq
    return n, 6 * n + 3 * attn


def forward_flops_per_token(preset: dict, vocab: int, seq: int) -> float:
    n = preset_parameters(preset, vocab)
    return 2 * n + 12 * preset["num_layers"] * preset["hidden_size"] * seq


def wml_peers(cfg: dict, run: dict) -> list[dict]:
    """The peers' presets: given by hand, or the size search's N/2 ... N/(k+1) shapes, the
    ones the wml stage will train (babydistill.distill.wml.peer_presets)."""
    if run.get("peers"):
        return [cfg["models"][p] for p in run["peers"]]
    from babydistill.distill.wml import peer_presets

    return [p.to_json() for p in peer_presets(cfg["models"][run["reference"]],
                                              cfg["tokenizer"]["vocab_size"], bdconfig.num_peers(run))]


def model_presets(base: dict, name: str) -> list[dict]:
    """The preset(s) a scored model runs: an ensemble's members, a WML peer's own preset
    (``<run>-peer<i>``), a pretrain or distill run's model, seeds stripped."""
    models = base["models"]
    peers = bdconfig.wml_peers(base)
    if name in peers:
        run_name, i = peers[name]
        return [wml_peers(base, bdconfig.run_of(base, "distill", run_name))[i - 1]]
    run_name = bdconfig.split_instance(name)[0]
    if run_name in (base.get("ensembles") or {}):
        return [models[base["pretrain"][t]["model"]] for t in base["ensembles"][run_name]]
    if run_name in base["pretrain"]:
        return [models[base["pretrain"][run_name]["model"]]]
    r = base["distill"][run_name]
    return [models[r["student"]]] if r["objective"] == "kd" else wml_peers(base, r)[:1]


def project(base: dict, smoke: dict, mfu: float, peak_tflops: float, bench_dir: Path,
            results_dir: Path) -> tuple[list[dict], list[dict], dict]:
    """(measured jobs, projected runs, assumptions)."""
    vocab, seq = base["tokenizer"]["vocab_size"], base["data"]["seq_length"]
    # tokens per epoch: the smoke's tokens-per-word on the real corpus, times 10M words
    meta_path = results_dir / "tokens" / "train.json"
    tokens_per_word = 1.35
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        words = sum(f["words"] for f in meta["files"])
        tokens_per_word = meta.get("truncated_from", meta["n_tokens"]) / max(words, 1)
    epoch_tokens = PAPER_WORDS * tokens_per_word
    rate = mfu * peak_tflops * 1e12

    measured = []
    smoke_budget = smoke["training"]
    smoke_tokens = smoke_budget["max_steps"] * smoke_budget["batch_size"] * seq
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rel = tsv.relative_to(bench_dir).with_suffix("")
        b = read_bench(tsv)
        stage = rel.parts[0]
        train_job = stage in ("pretrain", "distill")
        measured.append({"job": str(rel), "seconds": b["s"], "cpu_s": b["cpu_s"], "peak_rss_mb": b["max_rss_mb"],
                         "io_out_mb": b["io_out_mb"],
                         "s_per_token": b["s"] / smoke_tokens if train_job else None,
                         "cpu_s_per_token": b["cpu_s"] / smoke_tokens if train_job and b["cpu_s"] else None})

    runs = []
    models = base["models"]
    eval_chunks = base["data"].get("eval_chunks", schema()["$defs"]["eval_chunks"]["default"])
    eval_tokens_epoch = eval_chunks * seq  # the eval loss, once an epoch
    for name, run in base["pretrain"].items():
        train = bdconfig.training_of(base, run)
        n, f = train_flops_per_token(models[run["model"]], vocab, seq)
        tokens = epoch_tokens * train["epochs"]
        ev = forward_flops_per_token(models[run["model"]], vocab, seq) * eval_tokens_epoch * train["epochs"]
        runs.append({"run": f"pretrain {name}", "params_M": n / 1e6, "epochs": train["epochs"],
                     "pflop": (f * tokens + ev) / 1e15})
    for name, run in (base.get("distill") or {}).items():
        train = bdconfig.training_of(base, run)
        tokens = epoch_tokens * train["epochs"]
        if run["objective"] == "kd":
            n, f = train_flops_per_token(models[run["student"]], vocab, seq)
            teachers = [models[base["pretrain"][t]["model"]] for t in run["teachers"]]
            t_fwd = sum(forward_flops_per_token(p, vocab, seq) for p in teachers)
            if run.get("cache"):  # teachers run once over one epoch's fixed chunks
                flops, note = f * tokens + t_fwd * epoch_tokens, "cache: teachers once"
            else:
                flops, note = (f + t_fwd) * tokens, "live teachers"
        else:
            peers = wml_peers(base, run)
            per = [train_flops_per_token(p, vocab, seq) for p in peers]
            n, flops, note = sum(p[0] for p in per), sum(p[1] for p in per) * tokens, "wml peers"
        flops += 2 * n * eval_tokens_epoch * train["epochs"]  # ~2N forward for the eval loss
        runs.append({"run": f"distill {name} ({note})", "params_M": n / 1e6,
                     "epochs": train["epochs"], "pflop": flops / 1e15})
    # zero-shot scoring: every model on every suite (~67k BLiMP pairs x 2 sentences x ~12 tokens
    # each suite: an upper bound for the filtered ones)
    eval_tokens = 67_000 * 2 * 12
    n_suites = len(base["eval"]["blimp"]["suites"])
    score = 0.0
    for m in bdconfig.model_names(base):
        presets = model_presets(base, m)
        score += sum(forward_flops_per_token(p, vocab, seq) for p in presets) * eval_tokens * n_suites
    runs.append({"run": f"zero-shot scoring ({n_suites} suites, all models)", "params_M": None,
                 "epochs": None, "pflop": score / 1e15})
    # fine-tuning: each task's training set ~ a few thousand examples x ~64 tokens x epochs
    ft = 0.0
    glue = Path(smoke["eval"]["finetune"]["dir"]) / (smoke["eval"]["finetune"].get("subdir") or "")
    for task, spec in base["eval"]["finetune"]["tasks"].items():
        files = sorted(glue.glob(f"{task}.train*.jsonl")) or sorted(glue.glob(f"{task.split('-')[0]}.train*.jsonl"))
        chars = sum(f.stat().st_size for f in files) if files else 2_000_000
        task_tokens = chars / 4 * spec["epochs"]  # ~4 bytes a token of jsonl
        for m in bdconfig.model_names(base):
            if bdconfig.split_instance(m)[0] in (base.get("ensembles") or {}):
                continue
            (preset,) = model_presets(base, m)
            ft += train_flops_per_token(preset, vocab, seq)[1] * task_tokens
    runs.append({"run": f"fine-tuning ({len(base['eval']['finetune']['tasks'])} tasks, all trained models)",
                 "params_M": None, "epochs": None, "pflop": ft / 1e15})
    for r in runs:
        r["gpu_hours"] = r["pflop"] * 1e15 / rate / 3600
    assumptions = {"mfu": mfu, "peak_tflops": peak_tflops, "tokens_per_word": tokens_per_word,
                   "epoch_tokens": epoch_tokens, "smoke_tokens_per_training_job": smoke_tokens}
    return measured, runs, assumptions


def render(measured, runs, a, smoke_wall: str | None) -> str:
    total = sum(r["gpu_hours"] for r in runs)
    lines = [
        "## Projected GPU budget (one H100)",
        "",
        f"Assumptions: bf16 dense peak {a['peak_tflops']:g} TFLOP/s at MFU {a['mfu']:.0%} "
        f"(= {a['mfu'] * a['peak_tflops']:.0f} TFLOP/s sustained); one epoch = 10M words x "
        f"{a['tokens_per_word']:.3f} tokens/word (measured by the smoke's tokenizer on the "
        f"partial corpus) = {a['epoch_tokens'] / 1e6:.1f}M tokens; FLOPs per token 6N train / "
        "2N forward + attention; evaluation and fine-tuning are rough upper bounds.",
        "",
        "| run | params (M) | epochs | PFLOP | H100-hours |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        p = f"{r['params_M']:.0f}" if r["params_M"] else ""
        e = str(r["epochs"]) if r["epochs"] else ""
        lines.append(f"| {r['run']} | {p} | {e} | {r['pflop']:.1f} | {r['gpu_hours']:.2f} |")
    lines += [f"| **total** | | | {sum(r['pflop'] for r in runs):.1f} | **{total:.1f}** |", ""]
    lines += [f"At MFU 15% (small models, short sequences often reach less): "
              f"{total * a['mfu'] / 0.15:.1f} H100-hours; at 50%: {total * a['mfu'] / 0.5:.1f}. "
              "Seeds multiply their runs' rows.", ""]
    lines += [
        "## Measured in the smoke (CPU, fp32)",
        "",
        f"Each training job: {a['smoke_tokens_per_training_job']} tokens (the overlay's max_steps x "
        "batch_size x seq_length); s/token is the whole job's time (model build, eval, "
        "checkpoints included) over those tokens, so an upper bound on the step cost; CPU s is "
        "the job's CPU time (on a shared machine wall time mostly measures waiting). Peak "
        "memory is Snakemake's max_rss, written MB its io_out." + (f" Smoke wall time: {smoke_wall}." if smoke_wall else ""),
        "",
        "| job | wall s | CPU s | peak RSS (MiB) | written (MB) | wall s/token | CPU s/token |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    f = lambda v, fmt: format(v, fmt) if v is not None else ""  # noqa: E731
    for m in measured:
        lines.append(f"| {m['job']} | {m['seconds']:.1f} | {f(m['cpu_s'], '.1f')} | {f(m['peak_rss_mb'], '.0f')} | "
                     f"{f(m['io_out_mb'], '.0f')} | {f(m['s_per_token'], '.3f')} | {f(m['cpu_s_per_token'], '.3f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--base", default=str(REPO / "config.yaml"))
    c.add_argument("--overlay", default=str(REPO / "workflow" / "paper_smoke.yaml"))
    c.add_argument("--out", default="results/paper-smoke.yaml")
    p = sub.add_parser("project")
    p.add_argument("--base", default=str(REPO / "config.yaml"))
    p.add_argument("--smoke", default="results/paper-smoke.yaml")
    p.add_argument("--mfu", type=float, default=0.35)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM bf16 dense")
    p.add_argument("--wall", default=None, help="the smoke's wall time, for the record")
    p.add_argument("--out", default=None, help="write the markdown tables here (default: print)")
    args = ap.parse_args(argv)
    if args.cmd == "config":
        import yaml

        cfg = smoke_config(bdconfig.load_yaml(args.base), bdconfig.load_yaml(args.overlay))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "# generated by benchmarks/paper_smoke.py config: do not edit\n"
                                  + yaml.safe_dump(cfg, sort_keys=False))
        print(f"wrote {args.out} (run {cfg['run']!r})")
        return
    base, smoke = bdconfig.load_yaml(args.base), bdconfig.load_yaml(args.smoke)
    run = smoke["run"]
    measured, runs, a = project(base, smoke, args.mfu, args.peak_tflops,
                                Path("results/benchmarks") / run, Path("results") / run)
    text = render(measured, runs, a, args.wall)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
