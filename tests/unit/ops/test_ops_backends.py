"""Backend / GradRule enums, the dispatcher and argument validation of the ops."""

from __future__ import annotations

import pytest
import torch

from axcnn.errors import BackendUnavailable, ConfigError, LUTError, exit_code
from axcnn.lut import builtin
from axcnn.ops import Backend, GradRule, LUTTensors, approx_conv2d, approx_matmul, get_backend
from axcnn.quant import QuantSpec, qparams_from_range, weight_qparams


def test_backend_parse():
    assert Backend.parse("torch") is Backend.TORCH
    assert Backend.parse("REFERENCE") is Backend.REFERENCE
    assert Backend.parse(Backend.AUTO) is Backend.AUTO
    for bad in ("cuda", "", "torch2", None):
        with pytest.raises(ConfigError, match="unknown backend"):
            Backend.parse(bad)


def test_grad_rule_parse():
    assert GradRule.parse("ste") is GradRule.STE
    assert GradRule.parse("error-aware") is GradRule.ERROR_AWARE
    assert GradRule.parse("Error_Aware") is GradRule.ERROR_AWARE
    assert GradRule.parse(GradRule.STE) is GradRule.STE
    for bad in ("exact", "", "error aware"):
        with pytest.raises(ConfigError, match="gradient rule"):
            GradRule.parse(bad)


def test_auto_resolves_to_torch_on_cpu():
    impl = get_backend("auto", "cpu")
    assert impl.kind is Backend.TORCH
    assert get_backend(Backend.REFERENCE).kind is Backend.REFERENCE


def _conv_args():
    x = torch.rand(1, 2, 4, 4)
    w = torch.randn(3, 2, 3, 3)
    return x, w, dict(a_qparams=qparams_from_range(x.min(), x.max(), 8, False),
                      w_qparams=weight_qparams(w, 8, False, False))


def test_triton_on_cpu_is_unavailable_with_exit_code_3():
    x, w, q = _conv_args()
    with pytest.raises(BackendUnavailable) as info:
        approx_conv2d(x, w, padding=1, lut=builtin("drum4"), backend="triton", **q)
    assert exit_code(info.value) == 3
    assert "triton" in str(info.value)
    with pytest.raises(BackendUnavailable):
        get_backend("triton", "cpu")
    a = torch.zeros(2, 2, dtype=torch.int64)
    with pytest.raises(BackendUnavailable):
        approx_matmul(a, a, builtin("exact", bits=4), backend=Backend.TRITON)


def test_string_padding_is_refused():
    x, w, q = _conv_args()
    with pytest.raises(ConfigError):
        approx_conv2d(x, w, padding="same", **q)


def test_lut_must_match_the_spec():
    x, w, q = _conv_args()
    with pytest.raises(LUTError, match="4x4-bit"):
        approx_conv2d(x, w, lut=builtin("drum3", bits=4), spec=QuantSpec(8, 8), **q)
    with pytest.raises(LUTError, match="signed"):
        approx_conv2d(x, w, lut=builtin("drum4", bits=8, signed=True), spec=QuantSpec(8, 8), **q)
    with pytest.raises(LUTError):
        approx_conv2d(x, w, lut="builtin:drum4", **q)


def test_error_aware_needs_gradient_tables():
    x, w, q = _conv_args()
    bare = LUTTensors.from_lut(builtin("drum4"))
    with pytest.raises(ConfigError, match="gradient tables"):
        approx_conv2d(x, w, lut=bare, grad_rule="error_aware", **q)
    full = LUTTensors.from_lut(builtin("drum4"), with_grads=True, window=3)
    assert full.grad_a.shape == (256, 256) and full.grad_a.dtype == torch.float32
    y = approx_conv2d(x, w, lut=full, grad_rule="error_aware", **q)
    assert y.shape == (1, 3, 2, 2)


def test_lut_tensors_offsets():
    lt = LUTTensors.from_lut(builtin("exact", bits=4, signed=True, w_bits=8))
    assert (lt.a_offset, lt.w_offset) == (8, 128)
    assert lt.table.dtype == torch.int32 and lt.table.shape == (16, 256)
    assert lt.grad_a is None


def test_torch_backend_reads_a_lut_range_once_per_tensor_version():
    from axcnn.ops.torch_backend import table_range

    t = LUTTensors.from_lut(builtin("drum4"), "cpu").table
    assert table_range(t) == (int(t.min()), int(t.max()))
    mins = []
    orig = torch.Tensor.min
    try:
        torch.Tensor.min = lambda self, *a, **k: (mins.append(1), orig(self, *a, **k))[1]
        assert table_range(t) == (int(t.min()), int(t.max())) and len(mins) == 1   # cached
        t2 = t.clone()
        t2[0, 0] = -5                                   # another tensor / an in-place change
        assert table_range(t2)[0] == -5
        t2[0, 0] = -7
        assert table_range(t2)[0] == -7
    finally:
        torch.Tensor.min = orig
