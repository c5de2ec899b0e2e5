"""The int16 fraction form of the error-aware gradient tables that the Triton kernels gather
(``axcnn.ops.triton_backend.grad_fractions``); pure torch, runs without Triton."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from axcnn.lut import MultiplierLUT, builtin
from axcnn.ops import LUTTensors
from axcnn.ops.triton_backend import grad_fractions


def _check(lt: LUTTensors) -> None:
    frac = grad_fractions(lt)
    assert frac is not None
    assert frac.num_a.dtype == frac.num_w.dtype == torch.int16
    assert torch.equal((frac.num_a.double() / frac.den_a.double()[:, None]).float(), lt.grad_a)
    assert torch.equal((frac.num_w.double() / frac.den_w.double()[None, :]).float(), lt.grad_w)


@pytest.mark.parametrize("window", [2, 16])
def test_shared_tables_have_int16_fractions(evoapprox_name, evoapprox, window):
    table, meta = evoapprox[evoapprox_name]
    lut = MultiplierLUT(table, signed=meta["signed"], name=evoapprox_name)
    _check(LUTTensors.from_lut(lut, with_grads=True, window=window))


@pytest.mark.parametrize("name,bits,signed", [("drum4", 8, False), ("mitchell", 8, True),
                                              ("trunc6", 4, False), ("exact", 8, True)])
def test_builtin_tables_have_int16_fractions(name, bits, signed):
    _check(LUTTensors.from_lut(builtin(name, bits=bits, signed=signed), with_grads=True))


def test_wide_window_numerators_do_not_fit_int16():
    # 8-bit unsigned, window 128: L[a+128, w] - L[a-128, w] reaches 256 * 255 > 32767
    lt = LUTTensors.from_lut(builtin("exact", bits=8), with_grads=True, window=128)
    assert grad_fractions(lt) is None


def test_tables_not_from_the_window_are_not_replaced():
    lt = LUTTensors.from_lut(builtin("drum4", bits=8), with_grads=True, window=2)
    assert grad_fractions(dataclasses.replace(lt, grad_a=lt.grad_a * 1.5)) is None
    assert grad_fractions(dataclasses.replace(lt, window=3)) is None


def test_cached_per_tensor_and_version():
    lt = LUTTensors.from_lut(builtin("drum4", bits=8), with_grads=True)
    first = grad_fractions(lt)
    assert grad_fractions(lt) is first
    lt.grad_a.mul_(2)                      # changed in place: checked again, no longer matches
    assert grad_fractions(lt) is None
