"""ActivationObserver, observing() and calibrate()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from axcnn.errors import ConfigError
from axcnn.quant import ActivationObserver, calibrate, observers, observing, qparams_from_range


def batch(lo: float, hi: float, n: int = 64) -> torch.Tensor:
    x = torch.linspace(lo, hi, n)
    return x[torch.randperm(n, generator=torch.Generator().manual_seed(0))]


def test_first_batch_sets_the_range_then_ema():
    obs = ActivationObserver()
    obs.train()
    assert not bool(obs.initialized)
    obs(batch(-1.0, 2.0))
    assert obs.min_val.item() == -1.0 and obs.max_val.item() == 2.0
    assert bool(obs.initialized)
    obs(batch(-3.0, 4.0))
    assert obs.min_val.item() == pytest.approx(0.9 * -1.0 + 0.1 * -3.0)
    assert obs.max_val.item() == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    obs(batch(0.5, 1.0))
    assert obs.min_val.item() == pytest.approx(0.9 * (0.9 * -1.0 + 0.1 * -3.0) + 0.1 * 0.5)


def test_momentum_is_configurable():
    obs = ActivationObserver(momentum=0.5)
    obs(batch(0.0, 1.0))
    obs(batch(0.0, 3.0))
    assert obs.max_val.item() == pytest.approx(2.0)


def test_forward_is_identity_and_needs_no_grad():
    obs = ActivationObserver()
    x = torch.randn(3, 4, requires_grad=True)
    y = obs(x)
    assert torch.equal(y, x)
    assert not obs.min_val.requires_grad


def test_no_update_in_eval_mode_outside_observing():
    obs = ActivationObserver()
    obs(batch(-1.0, 1.0))
    obs.eval()
    obs(batch(-10.0, 10.0))
    assert (obs.min_val.item(), obs.max_val.item()) == (-1.0, 1.0)
    model = nn.Sequential(obs).eval()
    with observing(model):
        assert obs.calibrating
        obs(batch(-11.0, 11.0))
    assert not obs.calibrating
    assert obs.min_val.item() == pytest.approx(0.9 * -1.0 + 0.1 * -11.0)
    before = obs.max_val.item()
    obs(batch(-50.0, 50.0))
    assert obs.max_val.item() == before


def test_observing_reset_and_exception_safety():
    obs = ActivationObserver()
    obs(batch(-5.0, 5.0))
    model = nn.Sequential(nn.Identity(), obs).eval()
    with pytest.raises(RuntimeError):
        with observing(model, reset=True):
            assert not bool(obs.initialized)
            raise RuntimeError("boom")
    assert not obs.calibrating  # restored even on error


def test_empty_batch_does_not_initialise():
    obs = ActivationObserver()
    obs(torch.empty(0, 3))
    assert not bool(obs.initialized)


def test_buffers_in_state_dict():
    obs = ActivationObserver()
    obs(batch(-0.25, 6.0))
    sd = obs.state_dict()
    assert set(sd) == {"min_val", "max_val", "initialized"}
    fresh = ActivationObserver()
    fresh.load_state_dict(sd)
    assert bool(fresh.initialized)
    a, b = obs.qparams(8, False), fresh.qparams(8, False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # and inside a model, under its own prefix
    model = nn.Sequential(nn.Linear(2, 2), ActivationObserver())
    assert {"1.min_val", "1.max_val", "1.initialized"} <= set(model.state_dict())


def test_uninitialised_observer_raises_config_error():
    obs = ActivationObserver()
    with pytest.raises(ConfigError, match="conv7"):
        obs.qparams(8, False, owner="conv7")
    with pytest.raises(ConfigError):
        obs.qparams(4, True)


def test_qparams_use_the_range():
    obs = ActivationObserver()
    obs(batch(-1.0, 3.0))
    s, n = obs.qparams(8, False)
    es, en = qparams_from_range(torch.tensor(-1.0), torch.tensor(3.0), 8, False)
    assert torch.equal(s, es) and torch.equal(n, en)


def test_reset():
    obs = ActivationObserver()
    obs(batch(-1.0, 3.0))
    obs.reset()
    assert not bool(obs.initialized)
    assert obs.min_val.item() == 0.0 and obs.max_val.item() == 0.0
    obs(batch(2.0, 3.0))
    assert obs.min_val.item() == 2.0  # first batch after reset sets the range again


# --- calibrate ---------------------------------------------------------------------------------

class GradProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.grad_enabled = []

    def forward(self, x):
        self.grad_enabled.append(torch.is_grad_enabled())
        return x


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         ActivationObserver(), GradProbe(), nn.Conv2d(3, 2, 1), ActivationObserver())


def data(n_batches=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 2, 5, 5, generator=g) * (i + 1) for i in range(n_batches)]


@pytest.mark.parametrize("training", [True, False])
def test_calibrate_leaves_weights_and_bn_alone(training):
    model = small_model()
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items() if "min_val" not in k
              and "max_val" not in k and "initialized" not in k}
    seen = calibrate(model, data())
    assert seen == 3
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k   # incl. BN running_mean/var/num_batches_tracked
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    assert model[4].grad_enabled == [False, False, False]
    assert all(bool(o.initialized) for o in observers(model))
    assert not any(o.calibrating for o in observers(model))


def test_calibrate_ranges_follow_ema_of_batches():
    model = small_model()
    batches = data(2)
    calibrate(model, batches)
    # the last observer sees the output of the model; recompute it in eval mode
    model.eval()
    with torch.no_grad():
        outs = [model[:6](b) for b in batches]
    obs = model[6]
    assert obs.min_val.item() == pytest.approx(0.9 * outs[0].min().item() + 0.1 * outs[1].min().item(), rel=1e-5)
    assert obs.max_val.item() == pytest.approx(0.9 * outs[0].max().item() + 0.1 * outs[1].max().item(), rel=1e-5)


def test_calibrate_reset():
    model = small_model()
    obs = model[3]
    obs.min_val.fill_(-100.0)
    obs.max_val.fill_(100.0)
    obs.initialized.fill_(True)
    one = data(1)
    calibrate(model, one, reset=False)
    assert obs.max_val.item() == pytest.approx(0.9 * 100.0 + 0.1 * obs_input_max(model, one[0]), rel=1e-5)
    calibrate(model, one, reset=True)
    assert obs.max_val.item() == pytest.approx(obs_input_max(model, one[0]), rel=1e-6)
    assert obs.min_val.item() >= 0.0  # after ReLU: the range is the batch's, not -100


def obs_input_max(model, x):
    model.eval()
    with torch.no_grad():
        return model[:3](x).max().item()


def test_calibrate_accepts_pairs_and_max_batches():
    model = small_model()
    pairs = [(x, torch.zeros(4, dtype=torch.long)) for x in data(5)]
    assert calibrate(model, pairs, max_batches=2) == 2
    assert calibrate(model, iter(pairs)) == 5


# --- no host sync, cached readiness --------------------------------------------------------------

def _old_update(state, x, m=0.1):
    """The former update (in place, a Python branch on ``initialized``): the EMA reference."""
    lo, hi = torch.aminmax(x)
    lo, hi = lo.float(), hi.float()
    if state["init"]:
        state["min"].mul_(1 - m).add_(m * lo)
        state["max"].mul_(1 - m).add_(m * hi)
    else:
        state["min"].copy_(lo)
        state["max"].copy_(hi)
        state["init"] = True


@pytest.mark.parametrize("momentum", [0.1, 0.3, 0.01])
def test_ema_is_bit_identical_to_the_former_update(momentum):
    gen = torch.Generator().manual_seed(7)
    obs = ActivationObserver(momentum)
    ref = {"min": torch.tensor(0.0), "max": torch.tensor(0.0), "init": False}
    for i in range(200):
        x = torch.randn(37, generator=gen) * float(torch.rand(1, generator=gen) * 10) + (i % 7) - 3
        if i % 3 == 0:
            x = x.double()
        obs(x)
        _old_update(ref, x, momentum)
        assert obs.min_val.dtype == torch.float32
        assert torch.equal(obs.min_val, ref["min"]) and torch.equal(obs.max_val, ref["max"]), i
    obs.reset()
    ref = {"min": torch.tensor(0.0), "max": torch.tensor(0.0), "init": False}
    for x in (batch(-2.0, 5.0), batch(1.0, 3.0)):
        obs(x)
        _old_update(ref, x, momentum)
    assert torch.equal(obs.min_val, ref["min"]) and torch.equal(obs.max_val, ref["max"])


@pytest.fixture
def bool_reads(monkeypatch):
    """Counts reads of tensor truth values (each is a host sync on CUDA)."""
    calls = []
    orig = torch.Tensor.__bool__

    def spy(self):
        calls.append(self)
        return orig(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", spy)
    return calls


def test_forward_and_qparams_do_not_read_the_flag(bool_reads):
    obs = ActivationObserver()
    with pytest.raises(ConfigError):
        obs.qparams(8, False)       # known to be empty since construction: no read either
    obs(batch(-1.0, 2.0))
    obs(batch(-3.0, 4.0))
    for _ in range(3):
        obs.qparams(8, False)
    obs.eval()
    obs(batch(-9.0, 9.0))
    obs.qparams(8, False)
    assert bool_reads == []


def test_readiness_follows_reset_load_and_direct_writes(bool_reads):
    obs = ActivationObserver()
    obs(batch(-1.0, 2.0))
    sd = {k: v.clone() for k, v in obs.state_dict().items()}
    obs.reset()
    with pytest.raises(ConfigError):
        obs.qparams(8, False)
    assert bool_reads == []
    obs.load_state_dict(sd)                       # a range again (read once from the buffer)
    s, n = obs.qparams(8, False)
    assert len(bool_reads) == 1
    obs.qparams(8, False)
    assert len(bool_reads) == 1
    es, en = qparams_from_range(torch.tensor(-1.0), torch.tensor(2.0), 8, False)
    assert torch.equal(s, es) and torch.equal(n, en)
    empty = ActivationObserver().state_dict()
    obs.load_state_dict(empty)                    # loading an empty observer forgets the range
    with pytest.raises(ConfigError):
        obs.qparams(8, False)
    obs.initialized.fill_(True)                   # direct buffer writes are seen too
    obs.qparams(8, False)
    obs.initialized.fill_(False)
    with pytest.raises(ConfigError):
        obs.qparams(8, False)
    fresh = ActivationObserver()
    fresh.initialized = torch.tensor(True)        # a replaced buffer as well
    fresh.qparams(8, False)


def test_first_batch_after_load_of_an_empty_observer_sets_the_range():
    obs = ActivationObserver()
    obs(batch(-1.0, 2.0))
    obs.load_state_dict(ActivationObserver().state_dict())
    obs(batch(5.0, 6.0))
    assert obs.min_val.item() == 5.0 and obs.max_val.item() == 6.0


def test_calibrate_batchnorm_averages_batch_statistics_and_restores_the_rest():
    from axcnn.quant import calibrate_batchnorm

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    obs = ActivationObserver()
    model = nn.Sequential(obs, conv, bn, nn.ReLU())
    model.eval()
    obs.min_val.fill_(-1.0)
    obs.max_val.fill_(1.0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 3, 8, 8, generator=g) * (i + 1) for i in range(3)]
    with torch.no_grad():
        feats = [conv(x) for x in batches]
    want_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    want_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert calibrate_batchnorm(model, batches) == 3
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, want_var, rtol=1e-4)
    assert bn.momentum == 0.1 and not model.training and not bn.training
    assert float(obs.min_val) == -1.0 and float(obs.max_val) == 1.0   # observers untouched
    before = bn.running_mean.clone()
    assert calibrate_batchnorm(model, []) == 0 and torch.equal(bn.running_mean, before)
    model.train()
    calibrate_batchnorm(model, batches[:1], max_batches=1)
    assert model.training and bn.training                              # modes restored
