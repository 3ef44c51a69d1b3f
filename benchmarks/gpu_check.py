"""The first thing to run on a GPU machine (benchmarks/gpu_check.sh): one table, < 10 min.

Rows, each measured in this run (ratios side by side, never against stored numbers):

* matmul: the bf16 (CUDA) / float32 (CPU) matmul rate, the MFU denominator;
* train: the real Trainer step of llama-360M and gpt2-705M, bf16 autocast, without and
  with torch.compile (CUDA only: the trainer compiles only there): tokens/s and MFU;
* attention: the attention implementation the models run (sdpa), and on CUDA whether the
  flash kernel accepts their bf16 head sizes;
* distill: one step of the 58M student with live teachers vs from the top-k cache vs plain;
* blimp: the fast scorer on all of BLiMP vs lm-eval (lm-eval on the first N pairs per
  paradigm, its time on all pairs fitted), with identical decisions;
* torchrun: 2 processes (NCCL on 2 GPUs; with one GPU NCCL cannot put two ranks on one
  device, so the same DDP path runs with gloo on CPU), weights equal on every rank after.

``--quick`` (CI, CPU): the demo presets and tiny budgets, same rows. Rows that need CUDA
are printed as ``skipped`` with the reason; a row that fails prints ``FAILED`` and the
error, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import blimp_eval  # noqa: E402
import distill_step  # noqa: E402
import train_throughput  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []  # (check, setting, status, result)


def row(check: str, setting: str, status: str, result: str) -> None:
    ROWS.append((check, setting, status, result))
    print(f"[gpu_check] {check} {setting}: {status} {result}", flush=True)


def attempt(check: str, setting: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        result = fn()
        row(check, setting, "ok", f"{result} ({time.perf_counter() - t0:.0f} s)")
    except BaseException as e:  # noqa: BLE001  (SystemExit from a benchmark's CLI too)
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc()
        row(check, setting, "FAILED", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def attention_check(config: str, presets: list[str], vocab: int, cuda: bool) -> str:
    from babydistill.config import load_yaml
    from babydistill.models.build import build_model

    models = load_yaml(config)["models"]
    out = []
    for name in presets:
        m = build_model(models[name], vocab)
        impl = m.config._attn_implementation
        note = impl
        if cuda:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            m = m.to("cuda", torch.bfloat16).eval()
            ids = torch.randint(3, vocab, (2, 128), device="cuda")
            try:
                with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    m(input_ids=ids)
                note += ", flash ok"
            except RuntimeError as e:
                note += f", flash refused ({str(e).splitlines()[0][:60]})"
        if impl != "sdpa":
            raise RuntimeError(f"{name}: attention is {impl!r}, expected sdpa")
        out.append(f"{name}: {note}")
    return "; ".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="demo presets, tiny budgets (CI on CPU)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if cuda else 0
    device = torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)"
    no_cuda = "skipped", "needs CUDA (the trainer compiles on CUDA only)"
    if args.quick:
        config, vocab = str(REPO / "workflow" / "demo.yaml"), 2000
        big, student, teachers = ["llama-tiny", "gpt2-tiny"], "llama-student-tiny", ["llama-tiny", "gpt2-tiny"]
        train_extra = ["--batch-size", "4", "--seq-length", "64", "--steps", "1", "--warmup", "1",
                       "--matmul-size", "512"]
        distill_extra = ["--batch-size", "4", "--seq-length", "64", "--steps", "2", "--k", "16"]
        blimp_extra = ["--paradigms", "adjunct_island", "--limit", "8"]
        ddp_extra = ["--steps", "2"]
    else:
        config, vocab = str(REPO / "config.yaml"), 16000
        big, student, teachers = ["llama-360M", "gpt2-705M"], "llama-58M", ["llama-360M", "gpt2-705M"]
        train_extra = ["--steps", "5", "--warmup", "3"] + ([] if cuda else ["--batch-size", "2"])
        distill_extra = ["--batch-size", "32", "--steps", "10", "--k", "64"]
        blimp_extra = ["--lmeval-limit", "20"] if cuda else ["--limit", "20", "--lmeval-limit", "5"]
        ddp_extra = ["--preset", "llama-58M", "--config", config, "--vocab-size", "16000",
                     "--seq-length", "128", "--batch-size", "16" if cuda else "2", "--steps", "4"]
    print(f"[gpu_check] device: {device}; torch {torch.__version__}; quick={args.quick}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))

    # matmul rate and training steps
    matmul: dict = {}

    def train(preset: str, compile_: bool) -> str:
        out = tmp / f"train_{preset}_{compile_}.json"
        train_throughput.main(["--preset", preset, "--config", config, "--vocab-size", str(vocab),
                               "--json", str(out), *train_extra, *(["--compile"] if compile_ else [])])
        r = json.loads(out.read_text())
        matmul.setdefault("rate", max(r["matmul_flops_before"], r["matmul_flops_after"]))
        matmul.setdefault("dtype", r["matmul_dtype"])
        return (f"{r['tokens_per_s']:,.0f} tok/s, step {r['step_s'] * 1e3:.0f} ms, MFU {r['mfu']:.1%} "
                f"(non-emb {r['mfu_nonembedding']:.1%}), batch {r['batch_size']}")

    for preset in big:
        attempt("train", f"{preset} eager", lambda p=preset: train(p, False))
        if cuda:
            attempt("train", f"{preset} compile", lambda p=preset: train(p, True))
        else:
            row("train", f"{preset} compile", *no_cuda)
    if matmul:
        row("matmul", matmul["dtype"], "ok", f"{matmul['rate'] / 1e12:.2f} TFLOP/s (the MFU denominator)")

    attempt("attention", "sdpa" + (" / flash" if cuda else ""),
            lambda: attention_check(config, big, vocab, cuda))
    if not cuda:
        row("attention", "flash kernel", "skipped", "needs CUDA")

    def distill() -> str:
        out = tmp / "distill.json"
        distill_step.main(["--config", config, "--student", student, *sum([["--teacher", t] for t in teachers], []),
                           "--vocab-size", str(vocab), "--json", str(out), *distill_extra])
        r = json.loads(out.read_text())
        ms, ratio = r["ms_per_step"], r["ratio_to_plain"]
        return (f"plain {ms['plain']:.0f} ms, live {ms['live_kd']:.0f} ms ({ratio['live_kd']:.2f}x), "
                f"cached {ms['cached_kd']:.0f} ms ({ratio['cached_kd']:.2f}x)")

    attempt("distill", f"{student} <- {'+'.join(teachers)}", distill)

    def blimp() -> str:
        out = tmp / "blimp.json"
        blimp_eval.main(["--batch-size", "64", "--json", str(out), *blimp_extra])
        r = json.loads(out.read_text())
        if r["identical_decisions"] != r["compared_pairs"]:
            raise RuntimeError(f"decisions differ: {r['identical_decisions']}/{r['compared_pairs']}")
        return (f"{r['speedup']:.1f}x lm-eval on {r['n_pairs']} pairs "
                f"({'lm-eval fitted' if r['lmeval']['extrapolated'] else 'both measured'}), "
                f"decisions identical {r['identical_decisions']}/{r['compared_pairs']}")

    attempt("blimp", "fast vs lm-eval", blimp)

    def torchrun() -> str:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                        os.environ.get("PYTHONPATH")])))
        if n_gpus < 2:
            env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on CPU: see the module docstring
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(HERE / "ddp_check.py"), *ddp_extra]
        p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode or not lines:
            raise RuntimeError(f"torchrun exit {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
        r = json.loads(lines[-1])
        if r["max_rank_weight_diff"] != 0.0:
            raise RuntimeError(f"ranks disagree: max weight diff {r['max_rank_weight_diff']}")
        return f"{r['world_size']} ranks, {r['backend']} on {r['device']}, {r['tokens_per_s']:,.0f} tok/s, weights equal"

    setting = "2 GPUs, nccl" if n_gpus >= 2 else ("1 GPU: 2 ranks, gloo on CPU" if cuda else "2 ranks, gloo on CPU")
    attempt("torchrun", setting, torchrun)

    width = [max(len(r[i]) for r in ROWS + [("check", "setting", "status", "result")]) for i in range(3)]
    print(f"\nbabydistill gpu_check on {device}" + (" (quick)" if args.quick else ""))
    print(f"{'check':<{width[0]}}  {'setting':<{width[1]}}  {'status':<{width[2]}}  result")
    for c, s, st, res in ROWS:
        print(f"{c:<{width[0]}}  {s:<{width[1]}}  {st:<{width[2]}}  {res}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "quick": args.quick, "rows": [
            dict(zip(("check", "setting", "status", "result"), r)) for r in ROWS]}, indent=2) + "\n")
    return 1 if any(r[2] == "FAILED" for r in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
