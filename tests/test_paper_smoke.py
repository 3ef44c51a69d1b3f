"""The paper-size smoke's config (benchmarks/paper_smoke.py + workflow/paper_smoke.yaml):
every run of config.yaml gets the tiny budget, models stay full size, the result is valid."""

import importlib.util
from pathlib import Path

import yaml

from babydistill import config as bdconfig
REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("paper_smoke", REPO / "benchmarks" / "paper_smoke.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_config_covers_every_run_at_full_size_with_tiny_budgets(tmp_path):
    ps = load_script()
    base = bdconfig.load_yaml(REPO / "config.yaml")
    overlay = bdconfig.load_yaml(REPO / "workflow" / "paper_smoke.yaml")
    out = tmp_path / "smoke.yaml"
    ps.main(["config", "--out", str(out)])
    cfg = yaml.safe_load(out.read_text())
    assert cfg == ps.smoke_config(base, overlay)
    bdconfig.validate(cfg)
    assert cfg["run"] == "paper-smoke" and cfg["models"] == base["models"]
    assert cfg["tokenizer"]["vocab_size"] == base["tokenizer"]["vocab_size"]
    assert set(cfg["pretrain"]) == set(base["pretrain"]) and set(cfg["distill"]) == set(base["distill"])
    budget = overlay["training"]
    for section in ("pretrain", "distill"):
        for name in cfg[section]:
            train = bdconfig.training_of(cfg, cfg[section][name])
            for k, v in budget.items():
                if k == "epochs" and cfg[section][name].get("curriculum"):
                    continue  # a curriculum run gets an epoch per bucket
                assert train[k] == v, (section, name, k)
    assert cfg["distill"]["wml-58M-4peers"]["weight_update_frequency"] == 1
    for sweep in cfg["sweeps"].values():  # two trials, batches within the budget
        assert (sweep["trials"], sweep["workers"]) == (2, 1)
        assert sweep["space"]["batch_size"]["high"] <= 2 * budget["batch_size"]
    # only the overlay's fine-tuning tasks, each the paper's entry with the overlay's changes
    tasks = cfg["eval"]["finetune"]["tasks"]
    assert set(tasks) == set(overlay["eval"]["finetune"]["tasks"])
    assert tasks["cola"]["lr"] == base["eval"]["finetune"]["tasks"]["cola"]["lr"]
    assert tasks["cola"]["batch_size"] == overlay["eval"]["finetune"]["tasks"]["cola"]["batch_size"]
    # only the overlay's suites (EWoK's data is gated, not on this machine), and no MSGS
    # download when no msgs_* task is kept: every location the smoke reads is local
    assert set(cfg["eval"]["blimp"]["suites"]) == set(overlay["eval"]["blimp"]["suites"])
    assert "ewok_filtered" in base["eval"]["blimp"]["suites"]
    assert "msgs" in base["eval"]["finetune"] and "msgs" not in cfg["eval"]["finetune"]
    for loc in [*cfg["eval"]["blimp"]["suites"].values(), cfg["eval"]["finetune"], cfg["corpus"]]:
        assert not loc.get("url") and loc.get("dir", "").startswith("../shared/data"), loc
    for table in cfg["tables"]["paper"].values():
        assert set(table.get("suites", [])) <= set(cfg["eval"]["blimp"]["suites"])


def test_projection_counts_cached_teachers_once():
    ps = load_script()
    base = bdconfig.load_yaml(REPO / "config.yaml")
    smoke = ps.smoke_config(base, bdconfig.load_yaml(REPO / "workflow" / "paper_smoke.yaml"))
    _, runs, a = ps.project(base, smoke, 0.35, 989.0, Path("/nonexistent"), Path("/nonexistent"))
    by = {r["run"].split(" (")[0]: r for r in runs}
    live, cached = by["distill baby-llama-58M"], by["distill baby-llama-58M-topk"]
    assert cached["pflop"] < live["pflop"] / 2  # teachers: one pass instead of six epochs
    assert abs(sum(r["gpu_hours"] for r in runs) * 3600 * 0.35 * 989e12 / 1e15
               - sum(r["pflop"] for r in runs)) < 1e-6 * sum(r["pflop"] for r in runs)
