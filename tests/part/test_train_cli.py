"""End-to-end tests of `python -m part.train`: stage chaining, run directory contents, resume
after kill -9, refusal of another recipe's run directory, exit codes, and DDP parity (gloo).

A fresh interpreter spends seconds importing torch, so runs that need no process of their own
call `part.train.main` in this process (`here`); subprocesses are kept where the process matters:
kill -9, torchrun, and one check that `python -m part.train` maps errors to exit code 2."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_main
from part.train import main as train_main
from run_helpers import assert_same_epoch_losses, epoch_losses

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "digits_demo.yaml"
TINY = ["model.dim=32", "model.depth=2", "model.heads=4", "run.log_every=1", "run.device=cpu",
        "data.limit_test=100"]


def tiny(overrides):
    """Tiny sizes; PART's pair count only where the method is PART."""
    return TINY + ([] if "method.name=supervised" in overrides else ["method.num_pairs=32"])


def argv(out, overrides):
    return [str(RECIPE), f"run.output_dir={out}", *tiny(overrides), *overrides]


def here(out, *overrides, check=True):
    """`python -m part.train RECIPE run.output_dir=OUT ...` run in this process (one torch thread)."""
    res = run_main(train_main, argv(out, overrides))
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def losses(run_dir, stage):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["stage"] == stage and "event" not in r]  # steps only


CHAIN = ["pretrain.epochs=1", "finetune.epochs=2", "data.limit_train=256", "pretrain.batch_size=64",
         "finetune.batch_size=64"]


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """One pretrain -> finetune -> evaluate run (the recipe's three stages), shared by the tests
    that only read it: (output dir, run directory)."""
    out = tmp_path_factory.mktemp("chained")
    here(out, *CHAIN)
    return out, out / "digits_demo"


def test_stages_chain_and_write_the_run_directory(chained):
    out, run = chained
    for f in ["config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
              "checkpoints/pretrain.pt", "report/report.json", "report/report.md", "report/confusion.png"]:
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"stage", "epoch", "step", "loss", "lr", "items_per_s"} <= set(rows[0])
    assert [r["stage"] for r in rows].index("finetune") > [r["stage"] for r in rows].index("pretrain")
    report = json.loads((run / "report" / "report.json").read_text())
    for key in ("kappa", "accuracy", "macro_f1", "balanced_accuracy", "per_class_f1", "confusion", "top5"):
        assert key in report
    assert sum(map(sum, report["confusion"])) == 100
    # finished stages are not rerun: a second call trains nothing and logs nothing new
    before = (run / "metrics.jsonl").read_text()
    res = here(out, *CHAIN)
    assert (run / "metrics.jsonl").read_text() == before
    assert "already finished" in res.stdout


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    args = ["pretrain.epochs=3", "data.limit_train=320", "pretrain.batch_size=32", "run.checkpoint_every=3",
            "run.stages=[pretrain]", "model.depth=4", "model.dim=64"]
    here(tmp_path / "a", *args)
    reference = losses(tmp_path / "a" / "digits_demo", "pretrain")
    assert len(reference) == 30
    run = tmp_path / "b" / "digits_demo"
    cmd = [sys.executable, "-m", "part.train", *argv(tmp_path / "b", args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len(losses(run, "pretrain")) >= 14:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(losses(run, "pretrain"))
    assert 14 <= killed_at < 30, "the run must be killed in the middle of training"
    here(tmp_path / "b", *args)
    resumed = losses(run, "pretrain")
    assert [s for s, _ in resumed] == list(range(1, 31))
    for (s1, l1), (s2, l2) in zip(reference, resumed):
        assert l1 == pytest.approx(l2, rel=1e-6, abs=1e-7), (s1, l1, l2)
    # the epoch_end lines too: the checkpoint holds the epoch's running sums (not only resumed steps)
    assert_same_epoch_losses(epoch_losses(tmp_path / "a" / "digits_demo"), epoch_losses(run))


def test_refuses_another_recipes_run_directory(tmp_path):
    here(tmp_path, "pretrain.epochs=1", "run.stages=[pretrain]", "data.limit_train=64", "pretrain.batch_size=64")
    cfg = (tmp_path / "digits_demo" / "config.yaml").read_text()
    res = here(tmp_path, "pretrain.epochs=2", "run.stages=[pretrain]", "data.limit_train=64",
               "pretrain.batch_size=64", check=False)
    assert res.returncode == 2
    assert "different recipe" in res.stderr and "pretrain.epochs" in res.stderr
    assert (tmp_path / "digits_demo" / "config.yaml").read_text() == cfg


@pytest.mark.parametrize("args,needle", [
    (["pretrain.epoch=3"], "did you mean 'pretrain.epochs'"),
    (["pretrain.epochs=-1"], "pretrain.epochs"),
    (["method.name=nope"], "valid"),
    (["data.name=cifar100", "data.root=/nonexistent/cifar"], "data_prep/cifar.py"),
])
def test_bad_input_exit_code_2(tmp_path, args, needle):
    res = here(tmp_path, *args, check=False)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_recipe_file(tmp_path):
    """A subprocess: `python -m part.train` itself turns a user error into exit code 2 and one
    message, no traceback (the tests above call its `main` in this process)."""
    res = subprocess.run([sys.executable, "-m", "part.train", str(tmp_path / "nope.yaml")], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "nope.yaml" in res.stderr and "Traceback" not in res.stderr


def test_ddp_two_gloo_processes_equal_one_process(tmp_path):
    args = ["run.stages=[finetune]", "method.name=supervised", "finetune.epochs=1", "data.limit_train=256",
            "finetune.batch_size=64", "finetune.warmup_epochs=0", "finetune.calibration_fraction=0"]
    here(tmp_path / "one", *args)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "part.train", *argv(tmp_path / "two", args)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "global batch 64 = 2 x 32" in res.stdout
    one = losses(tmp_path / "one" / "digits_demo", "finetune")
    two = losses(tmp_path / "two" / "digits_demo", "finetune")
    assert len(one) == len(two) == 4
    for (s1, l1), (s2, l2) in zip(one, two):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4, abs=1e-5)


def test_a_run_that_failed_before_training_does_not_block_its_directory(tmp_path):
    bad = here(tmp_path, "modality.patch_size=16", check=False)
    assert bad.returncode == 2 and "'modality.patch_size' = 16 must be <= the image size 8" in bad.stderr
    assert not (tmp_path / "digits_demo").exists()  # nothing is created before the data validate
    here(tmp_path, "run.stages=[pretrain]", "pretrain.epochs=1", "data.limit_train=64", "pretrain.batch_size=64")
    assert (tmp_path / "digits_demo" / "checkpoints" / "pretrain.pt").exists()


def test_export_loads_into_timm(chained, tmp_path):
    import timm
    import torch
    from part.export import main as export_main
    _, run = chained  # pretrained and finetuned weights of the tiny model (dim 32, depth 2, 4 heads)
    for source in ("pretrain", "finetuned"):
        res = run_main(export_main, [run, "--from", source])
        assert res.returncode == 0, res.stderr
        sd = torch.load(run / f"timm_{source}.pth")
        model = timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, embed_dim=32,
                                  depth=2, num_heads=4, num_classes=10 if source == "finetuned" else 0)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected
        assert set(missing) <= {"pos_embed"} if source == "pretrain" else not missing
    # the finetuned classifier and the timm model compute the same logits
    from part.registry import get_modality
    from part.core.backbone import ViTEncoder
    from part.core.classifier import PatchClassifier
    m = get_modality("image", image_size=8, channels=1, patch_size=2)
    ours = PatchClassifier(m, m.tokenizer(32), ViTEncoder(32, 2, 4), 10).eval()
    ours.load_state_dict(torch.load(run / "checkpoints" / "finetuned.pt")["model"])
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model.eval()(x), ours(x), atol=1e-5, rtol=1e-4)
    # the sidecar builds the same model: the timm constructor's keywords, input and data description
    import json
    from timm.models.vision_transformer import VisionTransformer
    sidecar = json.loads((run / "timm_finetuned.pth.json").read_text())
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in sidecar["timm"]["kwargs"].items()}
    assert kwargs["img_size"] == (8, 8) and kwargs["patch_size"] == (2, 2) and kwargs["in_chans"] == 1
    assert sidecar["input"]["shape"] == [1, 8, 8] and sidecar["image_size"] == 8 and sidecar["channels"] == 1
    assert sidecar["class_names"] == [str(i) for i in range(10)] and sidecar["source"]["from"] == "finetuned"
    rebuilt = VisionTransformer(**kwargs).eval()
    rebuilt.load_state_dict(torch.load(run / "timm_finetuned.pth"), strict=True)
    torch.testing.assert_close(rebuilt(x), ours(x), atol=1e-5, rtol=1e-4)
    # a subprocess: `python -m part.export` itself turns a user error into exit code 2, no traceback
    res = subprocess.run([sys.executable, "-m", "part.export", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "not a run directory" in res.stderr and "Traceback" not in res.stderr
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.yaml").write_text((run / "config.yaml").read_text())
    res = run_main(export_main, [unfinished, "--from", "finetuned"])
    assert res.returncode == 2 and "has no checkpoints/finetuned.pt: its finetune stage has not finished" in res.stderr
    assert "run.stages=[finetune]" in res.stderr and "run.resume=never" not in res.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = run_main(export_main, [run, "--out", blocker / "w.pth"])
    assert res.returncode == 2 and "--out=" in res.stderr and "is not writable" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_rerun_of_some_stages_is_the_same_run_and_keeps_config_stages(tmp_path):
    """`run.stages=[evaluate]` on a run of all stages (part-compare's advice for a run without a
    report) is the same run: accepted without force, and config.yaml keeps the run's stages (so
    tables still see its pretraining); asking for a stage the run never had is refused."""
    from part.config import load_recipe, save_resolved
    from part.errors import ConfigError
    from part.training.rundir import check_run_dir, kept_stages
    recipe_path = Path(__file__).resolve().parents[2] / "recipes" / "digits_demo.yaml"
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("")
    save_resolved(load_recipe(recipe_path, ("run.stages=[pretrain,finetune,evaluate]",)), run_dir / "config.yaml")
    again = load_recipe(recipe_path, ("run.stages=[evaluate]",))
    changes, recorded = check_run_dir(again, run_dir)
    assert changes == [] and recorded.run.stages == ["pretrain", "finetune", "evaluate"]
    assert again.run.stages == ["evaluate"]  # what runs now
    old = load_recipe(recipe_path, ("run.stages=[finetune,evaluate]",))
    save_resolved(old, run_dir / "config.yaml")
    more = load_recipe(recipe_path, ("run.stages=[pretrain,finetune,evaluate]",))
    assert kept_stages(more, old) is more
    with pytest.raises(ConfigError, match="holds a run of a different recipe.*run.stages"):
        check_run_dir(more, run_dir)
