"""Finding stage runs, naming the command for missing ones, loading checkpoints unchanged."""

import hashlib

import pytest
import torch

from axcnn.analysis.stages import StageQuery, find_stages, load_stage_model
from axcnn.config import Retrain, Stage, resolve_config
from axcnn.errors import ConfigError
from axcnn.train import RunEnv, run_stage

COMMON = dict(train_subset=200, test_subset=100, calib_batches=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    env = RunEnv(runs_dir=root, progress=False)
    run_stage(resolve_config("lenet5", "synthetic", Stage.EXACT, optim_overrides={"epochs": 1}, **COMMON), env)
    run_stage(resolve_config("lenet5", "synthetic", Stage.QUANTIZED, optim_overrides={"epochs": 0}, **COMMON), env)
    for lut in ("builtin:drum3", "builtin:trunc8"):
        run_stage(resolve_config("lenet5", "synthetic", Stage.APPROXIMATE, retrain=Retrain.NONE, lut=lut,
                                 **COMMON), env)
    return env


def test_missing_runs_name_the_command(tmp_path):
    env = RunEnv(runs_dir=tmp_path / "empty", progress=False)
    with pytest.raises(ConfigError) as e:
        find_stages(StageQuery("lenet5", "synthetic"), env)
    msg = str(e.value)
    assert "axcnn train --model lenet5 --dataset synthetic --stage exact" in msg
    assert "--train-if-missing" in msg and str(tmp_path / "empty") in msg


def test_find_all_and_selected_luts(runs):
    st = find_stages(StageQuery("lenet5", "synthetic"), runs)
    assert [s.tag for s in st] == ["exact", "quantized", "approximate_drum3_8u", "approximate_trunc8_8u"]
    assert st[2].lut is not None and st[2].lut.name == "drum3_8u"
    only = find_stages(StageQuery("lenet5", "synthetic", stages=("approximate",), luts=("builtin:trunc8",)), runs)
    assert [s.tag for s in only] == ["approximate_trunc8_8u"]
    with pytest.raises(ConfigError, match="--stage approximate --bits 8 --lut builtin:mitchell"):
        find_stages(StageQuery("lenet5", "synthetic", stages=("approximate",), luts=("builtin:mitchell",)), runs)
    with pytest.raises(ConfigError, match="no approximate run"):
        find_stages(StageQuery("lenet5", "synthetic", stages=("approximate",), retrain=Retrain.STE), runs)
    with pytest.raises(ConfigError, match="--bits 4"):
        find_stages(StageQuery("lenet5", "synthetic", stages=("quantized",), bits=4), runs)


def test_load_stage_model_changes_nothing(runs):
    from axcnn.data import load_dataset
    from axcnn.train import evaluate

    data = load_dataset("synthetic").subset(None, 40, seed=42)
    for st in find_stages(StageQuery("lenet5", "synthetic"), runs):
        digest = hashlib.sha256(st.checkpoint.read_bytes()).hexdigest()
        model = load_stage_model(st, data.num_classes, 1)
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        saved = torch.load(st.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert all(torch.equal(saved[k], before[k]) for k in saved)   # observers included
        a1 = evaluate(model, data)["accuracy"]
        a2 = evaluate(model, data)["accuracy"]
        assert a1 == a2
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert hashlib.sha256(st.checkpoint.read_bytes()).hexdigest() == digest
        if st.stage is Stage.APPROXIMATE:  # the LUT is really in use
            assert any(getattr(m, "lut_table", None) is not None for m in model.modules())
