"""The staged pipeline through the real `axcnn` command on small synthetic and real data."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from axcnn.config import Retrain, Stage, resolve_config
from axcnn.train import RunEnv, run_stage
from axcnn.train import pipeline as pipeline_mod

SYN = ["--model", "lenet5", "--dataset", "synthetic", "--no-progress", "-q"]


def test_full_staged_flow_on_synthetic(tmp_path, cli):
    runs = tmp_path / "runs"
    cli("train", *SYN, "--stage", "exact", "--epochs", "2", "--runs-dir", runs, check=0)
    cli("train", *SYN, "--conv_type", "2", "--epochs", "1", "--runs-dir", runs, check=0)
    lut_dir = tmp_path / "luts"
    lut_dir.mkdir()
    cli("lut", "convert", "builtin:trunc8", lut_dir / "b_trunc8.npy", check=0)
    cli("lut", "convert", "builtin:drum3", lut_dir / "a_drum3.npy", check=0)
    out = cli("train", *SYN, "--conv_type", "3", "--epochs", "1", "--input_path", lut_dir,
              "--lut", "builtin:exact", "--runs-dir", runs, check=0)
    finals = re.findall(r"^FINAL_ACCURACY:([0-9.]+)$", out.stdout, re.M)
    assert len(finals) == 3  # once per LUT
    base = runs / "lenet5-synthetic"
    names = sorted(p.name for p in base.iterdir())
    assert "exact" in names and "quantized-8u" in names
    approx = [n for n in names if n.startswith("approximate-8u-")]
    assert len(approx) == 3 and all(n.endswith("-ste") for n in approx)
    for n in approx:
        d = base / n
        for f in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "result.json"):
            assert (d / f).is_file(), f"{d / f} missing"
        res = json.loads((d / "result.json").read_text())
        assert res["lut"]["sha256"] and "mae" in res["lut"]["metrics"]
        lines = (d / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
        assert res["accuracy"] == max(json.loads(x)["test_accuracy"] for x in lines)
    # the exact LUT reproduces the quantized model before retraining (epoch 0)
    q0 = json.loads((base / "quantized-8u" / "result.json").read_text())
    ex = next(base / n for n in approx if "exact_8u" in n)
    ex0 = json.loads((ex / "metrics.jsonl").read_text().splitlines()[0])
    qbest = json.loads((base / "quantized-8u" / "metrics.jsonl").read_text().splitlines()[q0["best_epoch"]])
    assert ex0["test_accuracy"] == pytest.approx(qbest["test_accuracy"], abs=0.5)
    # finished runs are not redone; evaluate reads the checkpoint without changing it
    before = (ex / "best.pt").stat().st_mtime_ns
    again = cli("train", *SYN, "--conv_type", "3", "--epochs", "1", "--lut", "builtin:exact",
                "--runs-dir", runs, check=0)
    assert "FINAL_ACCURACY:" in again.stdout
    ev = cli("evaluate", *SYN, "--stage", "approximate", "--lut", "builtin:exact", "--retrain", "ste",
             "--runs-dir", runs, check=0)
    acc = float(re.search(r"Test Accuracy: ([0-9.]+)%", ev.stdout).group(1))
    assert acc == pytest.approx(json.loads((ex / "result.json").read_text())["accuracy"])
    assert (ex / "best.pt").stat().st_mtime_ns == before
    # operand statistics (conv_type 5)
    cli("train", *SYN, "--conv_type", "5", "--runs-dir", runs, check=0)
    with np.load(base / "stats-8u" / "operand_stats.npz") as z:
        layers = [k for k in z.files if k != "__meta__"]
        assert len(layers) == 2 and all(z[k].dtype == np.int64 for k in layers)
        assert z[layers[0]].shape == (6, 256, 256)


def test_error_aware_and_keep_first(tmp_path, cli):
    runs = tmp_path / "runs"
    cli("train", *SYN, "--epochs", "1", "--train-subset", "500", "--runs-dir", runs, check=0)
    cli("train", *SYN, "--stage", "quantized", "--epochs", "0", "--train-subset", "500", "--runs-dir", runs, check=0)
    out = cli("train", *SYN, "--conv_type", "4", "--zone", "--epochs", "1", "--lut", "builtin:mitchell",
              "--train-subset", "500", "--runs-dir", runs, check=0)
    assert out.stdout.count("FINAL_ACCURACY:") == 1
    d = next((runs / "lenet5-synthetic").glob("approximate-*error_aware-first-quantized"))
    res = json.loads((d / "result.json").read_text())
    assert [r["mode"] for r in res["layers"]] == ["quantized", "approximate"]


def _syn_cfg(epochs, **kw):
    return resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": epochs}, **kw)


def test_interrupted_run_resumes_to_identical_result(tmp_path, monkeypatch):
    env_a = RunEnv(runs_dir=tmp_path / "a", progress=False)
    env_b = RunEnv(runs_dir=tmp_path / "b", progress=False)
    cfg = _syn_cfg(3, train_subset=600)
    full = run_stage(cfg, env_a)
    real_train_epoch = pipeline_mod.train_epoch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed during the second epoch
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "train_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_stage(cfg, env_b)
    rdir = env_b.runs_dir / "lenet5-synthetic" / "exact"
    assert not (rdir / "result.json").exists()
    monkeypatch.setattr(pipeline_mod, "train_epoch", real_train_epoch)
    resumed = run_stage(cfg, env_b)
    assert resumed["accuracy"] == full["accuracy"] and resumed["epochs"] == 3
    sa = torch.load(env_a.runs_dir / "lenet5-synthetic/exact/last.pt", weights_only=True)["state_dict"]
    sb = torch.load(rdir / "last.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    epochs = [json.loads(x)["epoch"] for x in (rdir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]


def test_a_run_checkpointed_on_a_gpu_resumes_on_a_cpu(tmp_path, caplog):
    """A last.pt whose data-generator state came from a CUDA generator (a run moved from a GPU
    machine) resumes with a reseeded data order and a warning, not a traceback."""
    env = RunEnv(runs_dir=tmp_path / "r", progress=False)
    cfg = _syn_cfg(2, train_subset=300)
    rdir = env.runs_dir / "lenet5-synthetic" / "exact"
    real = pipeline_mod.train_epoch
    calls = {"n": 0}

    def stop_in_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    pipeline_mod.train_epoch = stop_in_second
    try:
        with pytest.raises(KeyboardInterrupt):
            run_stage(cfg, env)
    finally:
        pipeline_mod.train_epoch = real
    ck = torch.load(rdir / "last.pt", weights_only=True)
    ck["rng"]["data"] = torch.zeros(16, dtype=torch.uint8)   # a CUDA Philox state (seed, offset)
    ck["rng"]["data_device"] = "cuda"
    torch.save(ck, rdir / "last.pt")
    with caplog.at_level("WARNING"):
        resumed = run_stage(cfg, env)
    assert resumed["epochs"] == 2 and "another kind of device" in caplog.text
    epochs = [json.loads(x)["epoch"] for x in (rdir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # epoch 1 kept, epoch 2 trained after the move
    assert torch.load(rdir / "last.pt", weights_only=True)["rng"]["data_device"] == "cpu"


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_without_duplicate_epochs(tmp_path):
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "axcnn.cli.main", "train", *SYN, "--epochs", "6", "--runs-dir", str(runs)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = runs / "lenet5-synthetic" / "exact" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    d = runs / "lenet5-synthetic" / "exact"
    epochs = [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(7))
    assert json.loads((d / "result.json").read_text())["epochs"] == 6
    assert not list(d.glob(".tmp-*"))


def _one_error_line(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("axcnn: error:")]
    assert len(err) == 1, proc.stderr
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_bad_inputs_give_one_line_and_exit_code(tmp_path, cli):
    runs = tmp_path / "runs"
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "shape.npy", np.zeros((100, 100)))
    nan = np.zeros((256, 256))
    nan[3, 4] = np.nan
    np.save(bad / "nan.npy", nan)
    np.save(bad / "frac.npy", np.full((256, 256), 0.5))
    np.save(bad / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(bad / "range.npy", np.full((16, 16), 10_000))
    for f, needle in [("shape.npy", "power of two"), ("nan.npy", "NaN"), ("frac.npy", "non-integer"),
                      ("obj.npy", "pickle"), ("range.npy", "outside the range")]:
        _one_error_line(cli("lut", "metrics", bad / f), 2, needle)
    # LUT bits different from --bits
    cli("lut", "convert", "builtin:drum3@4u", tmp_path / "four.npy", check=0)
    _one_error_line(cli("train", *SYN, "--stage", "approximate", "--lut", tmp_path / "four.npy",
                        "--runs-dir", runs), 2, "--bits")
    # missing checkpoint of the previous stage names the command that makes it
    _one_error_line(cli("train", *SYN, "--stage", "quantized", "--runs-dir", runs), 2,
                    "axcnn train --model lenet5 --dataset synthetic --stage exact")
    _one_error_line(cli("train", "--model", "resnet99", "--runs-dir", runs), 2, "lenet5")
    _one_error_line(cli("train", *SYN[:2], "--dataset", "imagenet", "--runs-dir", runs), 2, "fashion_mnist")
    # corrupt checkpoint
    cli("train", *SYN, "--epochs", "0", "--runs-dir", runs, check=0)
    (runs / "lenet5-synthetic" / "exact" / "best.pt").write_bytes(b"not a checkpoint")
    _one_error_line(cli("train", *SYN, "--stage", "quantized", "--runs-dir", runs), 2, "corrupt")
    # missing dataset files: where they were looked for and how to get them
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_error_line(cli("train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", empty,
                               "--runs-dir", runs, env={"HOME": str(tmp_path)}), 2)
    assert str(empty) in line
    # an explicitly requested backend that is not available: exit 3
    try:
        import triton  # noqa: F401
        has_triton = torch.cuda.is_available()
    except ImportError:
        has_triton = False
    if not has_triton:
        cli("train", *SYN, "--stage", "exact", "--epochs", "1", "--runs-dir", tmp_path / "r2", check=0)
        cli("train", *SYN, "--stage", "quantized", "--epochs", "0", "--runs-dir", tmp_path / "r2", check=0)
        _one_error_line(cli("evaluate", *SYN, "--stage", "quantized", "--backend", "triton",
                            "--runs-dir", tmp_path / "r2"), 3, "triton")
    # unknown flag: argparse usage error, exit 2
    assert cli("train", "--bogus").returncode == 2
    # config mismatch with an existing run directory
    _one_error_line(cli("train", *SYN, "--epochs", "3", "--runs-dir", runs), 2, "--force")


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_subset(tmp_path, cli):
    runs = tmp_path / "runs"
    common = ["--model", "lenet5", "--dataset", "fashion_mnist", "--train-subset", "6000",
              "--test-subset", "1000", "--no-progress", "-q", "--runs-dir", runs]
    cli("train", *common, "--epochs", "3", check=0)
    cli("train", *common, "--stage", "quantized", "--epochs", "1", check=0)
    out = cli("train", *common, "--stage", "approximate", "--no_retraining", "--lut", "builtin:trunc6",
              "--lut", "builtin:trunc10", check=0)
    accs = [float(x) for x in re.findall(r"FINAL_ACCURACY:([0-9.]+)", out.stdout)]
    base = runs / "lenet5-fashion_mnist"
    exact = json.loads((base / "exact" / "result.json").read_text())["accuracy"]
    quant = json.loads((base / "quantized-8u" / "result.json").read_text())["accuracy"]
    assert exact > 75 and quant > exact - 3
    assert accs[0] > accs[1]  # more error, less accuracy
    assert accs[0] > quant - 5


def test_post_and_bn_calibration(tmp_path, monkeypatch, cli):
    """--post-calibration (the seed's --approx_post_calibration): the approximate layers
    calibrate with exact products, then run with the LUT; its own run directory."""
    runs = tmp_path / "runs"
    sub = ["--train-subset", "300", "--test-subset", "200", "--runs-dir", runs]
    cli("train", *SYN, "--epochs", "1", *sub, check=0)
    cli("train", *SYN, "--stage", "quantized", "--epochs", "0", *sub, check=0)
    env = RunEnv(runs_dir=runs, progress=False)
    modes, ranges = [], []
    real = pipeline_mod.calibrate

    def spy(model, batches, **kw):
        from axcnn.nn import approx_layers

        modes.append([m.mode.value for _, m in approx_layers(model)])
        n = real(model, batches, **kw)
        ranges.append([(float(m.act_observer.min_val), float(m.act_observer.max_val))
                       for _, m in approx_layers(model)])
        return n

    monkeypatch.setattr(pipeline_mod, "calibrate", spy)
    results = {}
    for post in (False, True):
        cfg = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:drum3",
                             retrain=Retrain.NONE, train_subset=300, test_subset=200,
                             post_calibration=post)
        results[post] = run_stage(cfg, env)
    assert modes == [["approximate", "approximate"], ["quantized", "quantized"]]
    assert ranges[0][0] == ranges[1][0]      # the first layer sees the same input either way
    assert ranges[0][1] != ranges[1][1]      # the second sees approximate vs exact activations
    post_res = results[True]
    assert post_res["run_dir"].endswith("-noretrain-postcal")
    assert [r["mode"] for r in post_res["layers"]] == ["approximate", "approximate"]
    # the stage evaluates (and keeps) the approximate model
    ck = torch.load(Path(post_res["run_dir"]) / "best.pt", weights_only=False)
    assert ck["meta"]["lut_name"] == "drum3_8u"
    # --bn-calibration re-estimates the BatchNorm statistics after calibration (LeNet-5 has none)
    bn_calls = []
    monkeypatch.setattr(pipeline_mod, "calibrate_batchnorm",
                        lambda model, batches, **kw: bn_calls.append(kw["max_batches"]) or 0)
    cfg = resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, lut="builtin:drum3",
                         retrain=Retrain.NONE, train_subset=300, test_subset=200,
                         bn_calibration=True)
    assert run_stage(cfg, env)["run_dir"].endswith("-noretrain-bncal") and bn_calls == [32]
