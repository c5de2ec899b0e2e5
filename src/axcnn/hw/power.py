"""Workload-aware power of a mapped multiplier netlist.

Method (``method: "toggle-count"``):

1. An **operand stream** of N (activation, weight) pairs, one pair per clock cycle: drawn
   uniformly or from a model's recorded operand histogram (:func:`operand_stream`, seeded).
2. The liberty-mapped netlist (:mod:`axcnn.hw.synth`) is **simulated bit-parallel** over the
   stream, every cell evaluated with its liberty ``function``; per net the rising and falling
   transitions between consecutive cycles are counted. ``delay_model="zero"`` counts only the
   functional transitions (no glitches); ``"unit"`` re-simulates every transition with one unit
   of delay per gate and also counts glitches (transport delay: an upper-side estimate).
3. **Switching power** of every cell-driven net: ``0.5 * C * V^2`` per transition, ``C`` = the
   liberty capacitances of the input pins it drives (+ ``output_load_pf`` on output ports; no
   wire-load model). **Internal power**: per output transition the liberty ``rise_power`` /
   ``fall_power`` energy at the net's load and the input slew, averaged over the cell's input
   arcs weighted by how often each input toggled; plus input-pin internal energy where the
   library has it. Slews come from the liberty transition tables, propagated from the inputs
   (input slew 0, as OpenSTA assumes by default). **Leakage**: ``cell_leakage_power``, or the
   state-dependent ``leakage_power`` groups weighted by the simulated state probabilities.
4. Power = energy per cycle / clock period, at the library's nominal voltage; all values in
   watts, and ``energy_per_op_pJ`` = dynamic energy per multiplication.

:func:`activity_power` evaluates the same model with one fixed activity on every net; on
circuits where OpenSTA's activity propagation is exact (inverter/buffer chains) it agrees with
OpenSTA's ``report_power``, which checks units, table lookups and slews (see the tests).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..lut.metrics import rebin_histogram
from .liberty import Library, compile_function
from .netlist import ONES, Netlist, popcount_rows, tail_mask
from .ports import PortMap

DELAY_MODELS = ("zero", "unit")


# --------------------------------------------------------------------------------------
# Operand streams
# --------------------------------------------------------------------------------------

@dataclass
class OperandStream:
    """A sequence of operand pairs as LUT indices (signed: value + 2^(b-1)), one per cycle."""

    a_idx: np.ndarray
    w_idx: np.ndarray
    source: str
    seed: int | None

    def __len__(self) -> int:
        return int(self.a_idx.size)

    def describe(self) -> dict:
        return {"source": self.source, "vectors": len(self), "seed": self.seed}


def load_histogram(path: str | os.PathLike, a_bits: int, w_bits: int,
                   signed: bool | None = None) -> np.ndarray:
    """A (2^a, 2^w) float64 operand histogram from ``.npy`` or ``.npz``.

    Accepts arrays of shape (2^A, 2^W) or (C, 2^A, 2^W); an ``.npz`` (e.g. the operand
    recorder's, one array per layer plus ``__meta__``) is summed over all its arrays. A
    histogram recorded at more bits is rebinned (low bits dropped).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"operand histogram '{path}' does not exist; pass 'uniform' or a "
                          ".npy/.npz count array of shape (2^a, 2^w) or (C, 2^a, 2^w)")
    arrays: list[tuple[str, np.ndarray]] = []
    meta: dict = {}
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                for k in z.files:
                    if k.startswith("__"):
                        if k == "__meta__":
                            try:
                                meta = json.loads(str(z[k]))
                            except (ValueError, TypeError):
                                meta = {}
                        continue
                    arrays.append((k, z[k]))
        else:
            arrays.append((p.stem, np.load(p, allow_pickle=False)))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot read operand histogram '{path}': {exc}") from None
    if not arrays:
        raise ConfigError(f"operand histogram '{path}' holds no arrays")
    layers = meta.get("layers", {}) if isinstance(meta, dict) else {}
    if signed is not None:
        for name, fmt in layers.items():
            if isinstance(fmt, dict) and "signed" in fmt and bool(fmt["signed"]) != bool(signed):
                raise ConfigError(
                    f"operand histogram '{path}' layer '{name}' was recorded with "
                    f"{'signed' if fmt['signed'] else 'unsigned'} operands but the circuit is "
                    f"{'signed' if signed else 'unsigned'}")
    total = None
    for name, arr in arrays:
        a = np.asarray(arr)
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"operand histogram '{path}' array '{name}' is not numeric")
        if a.ndim == 3:
            a = a.sum(axis=0)
        if a.ndim != 2:
            raise ConfigError(f"operand histogram '{path}' array '{name}' has shape {arr.shape}; "
                              "expected (2^a, 2^w) or (C, 2^a, 2^w)")
        a = a.astype(np.float64)
        want = (1 << a_bits, 1 << w_bits)
        if a.shape != want:
            if a.shape[0] >= want[0] and a.shape[1] >= want[1]:
                try:
                    a = rebin_histogram(a, a_bits, w_bits)
                except Exception as exc:
                    raise ConfigError(f"operand histogram '{path}' array '{name}': {exc}") from None
            else:
                raise ConfigError(
                    f"operand histogram '{path}' array '{name}' has shape {arr.shape}, but the "
                    f"circuit is {a_bits}x{w_bits}-bit and needs {want} (or more bits to rebin)")
        total = a if total is None else total + a
    assert total is not None
    if not np.all(np.isfinite(total)) or total.min() < 0:
        raise ConfigError(f"operand histogram '{path}' has negative, NaN or infinite counts")
    if total.sum() <= 0:
        raise ConfigError(f"operand histogram '{path}' is empty (all counts are zero)")
    return total


def operand_stream(source: str | os.PathLike | np.ndarray, a_bits: int, w_bits: int, *,
                   n: int = 65536, seed: int = 0, signed: bool | None = None) -> OperandStream:
    """``'uniform'``, a histogram file, or a histogram array -> a seeded operand stream."""
    if n < 2:
        raise ConfigError(f"an operand stream needs at least 2 vectors, got {n}")
    rng = np.random.default_rng(seed)
    if isinstance(source, str) and source == "uniform":
        return OperandStream(rng.integers(0, 1 << a_bits, n), rng.integers(0, 1 << w_bits, n),
                             "uniform", seed)
    if isinstance(source, np.ndarray):
        hist = source.astype(np.float64)
        if hist.ndim == 3:
            hist = hist.sum(axis=0)
        if hist.shape != (1 << a_bits, 1 << w_bits):
            raise ConfigError(f"operand histogram has shape {source.shape}; expected "
                              f"{(1 << a_bits, 1 << w_bits)}")
        label = "histogram"
    else:
        hist = load_histogram(source, a_bits, w_bits, signed)
        label = str(source)
    p = hist.reshape(-1) / hist.sum()
    k = rng.choice(p.size, size=n, p=p)
    return OperandStream(k >> w_bits, k & ((1 << w_bits) - 1), label, seed)


# --------------------------------------------------------------------------------------
# Netlist electrical view
# --------------------------------------------------------------------------------------

@dataclass
class _Electrical:
    loads: np.ndarray       # library cap units, per net
    slews: np.ndarray       # library time units, per net
    driven: np.ndarray      # bool per net: driven by a cell output


def _electrical(netlist: Netlist, lib: Library, output_load_pf: float,
                input_slew: float = 0.0) -> _Electrical:
    loads = np.zeros(netlist.n_nets, dtype=np.float64)
    for c in netlist.cells.values():
        cell = lib.cell(c["type"])
        for pin, net in c["pins"].items():
            lp = cell.pins.get(pin)
            if lp is not None and lp.direction == "input" and net > 1:
                loads[net] += lp.capacitance
    if output_load_pf:
        out_load = output_load_pf * 1e-12 / lib.cap_si
        for p in netlist.outputs:
            for b in p.bits:
                if b > 1:
                    loads[b] += out_load
    slews = np.full(netlist.n_nets, float(input_slew), dtype=np.float64)
    driven = np.zeros(netlist.n_nets, dtype=bool)
    for g in netlist.gates:
        driven[g.out] = True
        cell = lib.cell(g.type)
        pin = cell.pins[g.out_pin]
        pins = netlist.cells[g.cell]["pins"]
        best = 0.0
        for arc in pin.timing:
            src = pins.get(arc.related_pin)
            s_in = slews[src] if src is not None else input_slew
            vals = [t.lookup(load=loads[g.out], slew=s_in)
                    for t in (arc.rise_transition, arc.fall_transition) if t is not None]
            if vals:
                best = max(best, sum(vals) / len(vals))
        slews[g.out] = max(best, 0.0)
    return _Electrical(loads, slews, driven)


def _energies(netlist: Netlist, lib: Library, el: _Electrical, rises: np.ndarray,
              falls: np.ndarray, state_prob) -> dict[str, float]:
    """Total energies (J) for the given transition counts, plus leakage power (W)."""
    v = lib.voltage_V
    toggles = rises + falls
    cap_f = el.loads * lib.cap_si
    e_net = 0.5 * cap_f * v * v * toggles
    switching = float(e_net[el.driven].sum())
    input_nets = np.zeros(netlist.n_nets, dtype=bool)
    for p in netlist.inputs:
        for b in p.bits:
            if b > 1:
                input_nets[b] = True
    input_switching = float(e_net[input_nets & ~el.driven].sum())
    internal = 0.0
    leakage = 0.0
    e_si = lib.energy_si
    for cname, c in netlist.cells.items():
        cell = lib.cell(c["type"])
        pins = c["pins"]
        # output-pin internal energy
        for opin in cell.outputs:
            onet = pins.get(opin)
            if onet is None or onet <= 1:
                continue
            groups = [g for g in cell.pins[opin].internal_power if g.rise or g.fall]
            if not groups:
                continue
            by_rel: dict[str | None, list] = {}
            for g in groups:
                by_rel.setdefault(g.related_pin, []).append(g)
            weights, e_r, e_f = [], [], []
            for rel, gs in by_rel.items():
                rel_pins = rel.split() if rel else cell.inputs
                rel_nets = [pins[r] for r in rel_pins if r in pins]
                w = float(sum(toggles[n] for n in rel_nets))
                slew = max((el.slews[n] for n in rel_nets), default=0.0)
                er = np.mean([g.rise.lookup(load=el.loads[onet], slew=slew) for g in gs if g.rise] or [0.0])
                ef = np.mean([g.fall.lookup(load=el.loads[onet], slew=slew) for g in gs if g.fall] or [0.0])
                weights.append(w)
                e_r.append(er)
                e_f.append(ef)
            wsum = sum(weights)
            ws = [w / wsum for w in weights] if wsum > 0 else [1.0 / len(weights)] * len(weights)
            er = sum(w * e for w, e in zip(ws, e_r))
            ef = sum(w * e for w, e in zip(ws, e_f))
            internal += (rises[onet] * er + falls[onet] * ef) * e_si
        # input-pin internal energy (e.g. clock or passive input power)
        for ipin in cell.inputs:
            inet = pins.get(ipin)
            if inet is None or inet <= 1:
                continue
            for g in cell.pins[ipin].internal_power:
                er = g.rise.lookup(slew=el.slews[inet]) if g.rise else 0.0
                ef = g.fall.lookup(slew=el.slews[inet]) if g.fall else 0.0
                internal += (rises[inet] * er + falls[inet] * ef) * e_si
        # leakage
        if cell.leakage_states:
            covered = 0.0
            lk = 0.0
            plain = None
            for when, value in cell.leakage_states:
                if not when:
                    plain = value
                    continue
                prob = state_prob(cname, cell, when)
                covered += prob
                lk += prob * value
            rest = plain if plain is not None else cell.leakage
            lk += max(0.0, 1.0 - covered) * rest
            leakage += lk * lib.leakage_si
        else:
            leakage += cell.leakage * lib.leakage_si
    return {"switching_J": switching, "internal_J": internal, "input_switching_J": input_switching,
            "leakage_W": leakage}


def _summary(energies: dict, cycles: float, clock_ns: float, lib: Library) -> dict:
    t = clock_ns * 1e-9
    sw = energies["switching_J"] / cycles / t
    it = energies["internal_J"] / cycles / t
    lk = energies["leakage_W"]
    return {
        "internal_W": it, "switching_W": sw, "leakage_W": lk, "total_W": it + sw + lk,
        "energy_per_op_pJ": (energies["switching_J"] + energies["internal_J"]) / cycles * 1e12,
        "input_nets_switching_W": energies["input_switching_J"] / cycles / t,
        "clock_ns": clock_ns, "voltage_V": lib.voltage_V, "units": "W",
    }


@dataclass
class Toggles:
    """Per-net transition counts over an operand stream."""

    rises: np.ndarray        # int64 per net
    falls: np.ndarray
    ones: np.ndarray         # cycles in which the net is 1
    transitions: int         # consecutive-vector pairs (len(stream) - 1)
    vectors: int
    states: list             # [(values, lane mask)] per chunk, for state probabilities


def count_toggles(netlist: Netlist, portmap: PortMap, signed: bool, stream: OperandStream, *,
                  delay_model: str = "zero", chunk: int = 1 << 16,
                  keep_states: bool = False) -> Toggles:
    """Simulate ``netlist`` on ``stream`` and count every net's rising/falling transitions.

    ``keep_states`` keeps the simulated values (for state-dependent leakage).
    """
    from .simulate import input_words

    if delay_model not in DELAY_MODELS:
        raise ConfigError(f"unknown delay model '{delay_model}'; expected one of {DELAY_MODELS}")
    n = len(stream)
    if n < 2:
        raise ConfigError("the operand stream needs at least 2 vectors")
    chunk = max(2, int(chunk))
    rises = np.zeros(netlist.n_nets, dtype=np.int64)
    falls = np.zeros(netlist.n_nets, dtype=np.int64)
    ones = np.zeros(netlist.n_nets, dtype=np.int64)
    states: list = []
    # chunks overlap by one vector so that every consecutive pair is counted once
    start = 0
    while start < n - 1:
        stop = min(n, start + chunk)
        a = stream.a_idx[start:stop]
        w = stream.w_idx[start:stop]
        m = stop - start
        n_words = -(-m // 64)
        vals = netlist.simulate(input_words(netlist, portmap, a, w, signed), n_words)
        owned = tail_mask(m if stop == n else m - 1, n_words)  # vectors counted in this chunk
        ones += popcount_rows(vals & owned)
        if keep_states:
            states.append((vals & owned, owned))
        if delay_model == "zero":
            nxt = _shift_down(vals)
            diff = (vals ^ nxt) & tail_mask(m - 1, n_words)
            rises += popcount_rows(diff & nxt)
            falls += popcount_rows(diff & vals)
        else:
            n_w2 = -(-(m - 1) // 64)
            prev_vals = netlist.simulate(input_words(netlist, portmap, a[:-1], w[:-1], signed), n_w2)
            # padding lanes hold the same (zero) inputs before and after, so they never toggle
            new_in = input_words(netlist, portmap, a[1:], w[1:], signed)
            _, r, f = netlist.settle_unit_delay(prev_vals, new_in)
            rises += r
            falls += f
        start = stop - 1
    return Toggles(rises, falls, ones, n - 1, n, states)


def workload_power(netlist: Netlist, lib: Library, portmap: PortMap, signed: bool,
                   stream: OperandStream, *, clock_ns: float = 10.0, output_load_pf: float = 0.0,
                   delay_model: str = "zero", chunk: int = 1 << 16) -> dict:
    """Toggle-count power of a liberty-mapped ``netlist`` on ``stream`` (see module docstring)."""
    if clock_ns <= 0:
        raise ConfigError(f"clock period must be positive, got {clock_ns} ns")
    el = _electrical(netlist, lib, output_load_pf)
    used = {c["type"] for c in netlist.cells.values()}
    stateful = any(lib.cell(t).leakage_states for t in used)
    tg = count_toggles(netlist, portmap, signed, stream, delay_model=delay_model, chunk=chunk,
                       keep_states=stateful)
    rises, falls, n, transitions = tg.rises, tg.falls, tg.vectors, tg.transitions

    def state_prob(cname: str, cell, when: str) -> float:
        fn, order = compile_function(when)
        pins = netlist.cells[cname]["pins"]
        hits = 0
        for vals, mask in tg.states:
            args = [vals[pins[p]] if p in pins else np.zeros(vals.shape[1], np.uint64) for p in order]
            res = fn(*args) if order else np.full(vals.shape[1], ONES)
            hits += int(popcount_rows((np.asarray(res) & mask)[None, :])[0])
        return hits / n

    energies = _energies(netlist, lib, el, rises, falls, state_prob)
    out = _summary(energies, transitions, clock_ns, lib)
    in_nets = [b for p in netlist.inputs for b in p.bits if b > 1]
    cell_nets = np.nonzero(el.driven)[0]
    out.update({
        "method": "toggle-count",
        "description": ("zero-delay" if delay_model == "zero" else "unit-delay (glitches counted)")
        + " bit-parallel simulation of the mapped netlist on the operand stream; switching "
        "0.5*C*V^2 per transition from liberty pin capacitances, internal energy from the "
        "liberty tables, leakage from the liberty",
        "delay_model": delay_model,
        "operands": stream.describe(),
        "input_toggle_rate": float((rises + falls)[in_nets].sum() / max(1, len(in_nets)) / transitions)
        if in_nets else 0.0,
        "mean_net_toggle_rate": float((rises + falls)[cell_nets].mean() / transitions) if cell_nets.size else 0.0,
        "output_load_pf": output_load_pf,
    })
    return out


def _shift_down(vals: np.ndarray) -> np.ndarray:
    """Packed streams advanced by one vector: bit t of the result is bit t+1 of ``vals``."""
    nxt = vals >> np.uint64(1)
    if vals.shape[1] > 1:
        nxt[:, :-1] |= vals[:, 1:] << np.uint64(63)
    return nxt


def activity_power(netlist: Netlist, lib: Library, *, activity: float = 0.1, clock_ns: float = 10.0,
                   output_load_pf: float = 0.0, duty: float = 0.5) -> dict:
    """The power model with ``activity`` transitions per cycle on every net (a cross-check)."""
    el = _electrical(netlist, lib, output_load_pf)
    rises = np.full(netlist.n_nets, activity / 2.0)
    falls = np.full(netlist.n_nets, activity / 2.0)
    rises[:2] = 0.0
    falls[:2] = 0.0
    energies = _energies(netlist, lib, el, rises, falls, lambda *_: duty)
    out = _summary(energies, 1.0, clock_ns, lib)
    out.update({"method": "uniform-activity", "activity_per_clock": activity})
    return out


def stream_input_activity(stream: OperandStream, a_bits: int, w_bits: int, signed: bool) -> float:
    """Mean transitions per cycle of the operand input bits under ``stream``."""
    from .simulate import index_to_pattern

    pa = index_to_pattern(stream.a_idx, a_bits, signed)
    pw = index_to_pattern(stream.w_idx, w_bits, signed)
    ta = np.unpackbits(((pa[1:] ^ pa[:-1]) & 0xFF).astype(np.uint8)).sum()
    tw = np.unpackbits(((pw[1:] ^ pw[:-1]) & 0xFF).astype(np.uint8)).sum()
    return float((ta + tw) / (a_bits + w_bits) / (len(stream) - 1))


__all__ = ["OperandStream", "operand_stream", "load_histogram", "workload_power", "count_toggles",
           "Toggles", "activity_power", "stream_input_activity", "DELAY_MODELS"]
