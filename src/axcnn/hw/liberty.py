"""Liberty (.lib) standard-cell libraries: reading, boolean functions, the default library.

- :func:`read_liberty` parses a Liberty file into a :class:`Library` holding what axcnn needs:
  units (converted to SI), nominal voltage, and per cell its area, leakage (plain and
  state-dependent), pins with direction, capacitance, ``function`` (compiled to a bit-parallel
  numpy evaluator), timing transition tables and internal-power tables.
- :func:`compile_function` turns a Liberty boolean function (``"(!((A B)+C))"``, ``"A^B"``,
  ``"!A"``, ``"A'"``...) into Python that works on packed ``uint64`` words.
- The default library is OSU's 0.18 um standard cells (``osu018_stdcells.lib``) from Debian's
  ``qflow-tech-osu018`` package. :func:`install_default_liberty` (CLI: ``axcnn circuit setup``)
  runs ``apt-get download qflow-tech-osu018`` and ``dpkg-deb -x`` into the cache directory
  (``$AXCNN_CACHE/liberty`` or ``~/.cache/axcnn/liberty``); installing the package itself would
  pull in the whole qflow flow. ``$AXCNN_LIBERTY`` overrides the default library path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, ToolNotFound

DEFAULT_PACKAGE = "qflow-tech-osu018"
DEFAULT_NAME = "osu018"
DEFAULT_FILES = {  # path inside the package -> name in the cache
    "usr/share/qflow/tech/osu018/osu018_stdcells.lib": "osu018_stdcells.lib",
    "usr/share/qflow/tech/osu018/osu018_stdcells.v": "osu018_stdcells.v",
}
SYSTEM_LOCATIONS = ("/usr/share/qflow/tech/osu018/osu018_stdcells.lib",)
SETUP_COMMAND = "axcnn circuit setup"
MANUAL_COMMANDS = (
    "cd $(mktemp -d) && apt-get download qflow-tech-osu018 && "
    "dpkg-deb -x qflow-tech-osu018_*.deb x && mkdir -p ~/.cache/axcnn/liberty/osu018 && "
    "cp x/usr/share/qflow/tech/osu018/osu018_stdcells.lib x/usr/share/qflow/tech/osu018/"
    "osu018_stdcells.v ~/.cache/axcnn/liberty/osu018/"
)


class LibertyError(ConfigError):
    """A liberty file that cannot be read or lacks what the flow needs (exit 2)."""


# --------------------------------------------------------------------------------------
# Generic Liberty syntax: groups, simple and complex attributes
# --------------------------------------------------------------------------------------

@dataclass
class Group:
    """One Liberty group ``type (args) { ... }``."""

    type: str
    args: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)     # simple: str; complex: list[str]
    groups: list["Group"] = field(default_factory=list)

    def sub(self, type_: str) -> list["Group"]:
        return [g for g in self.groups if g.type == type_]

    def first(self, type_: str) -> "Group | None":
        for g in self.groups:
            if g.type == type_:
                return g
        return None

    @property
    def name(self) -> str:
        return self.args[0] if self.args else ""


_TOKEN = re.compile(
    r'\s+|/\*.*?\*/|//[^\n]*|"(?:[^"\\]|\\.)*"|[(){}:;,]|[^\s(){}:;,"]+', re.S
)


def _tokens(text: str) -> list[str]:
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    out = []
    for m in _TOKEN.finditer(text):
        t = m.group(0)
        c = t[0]
        if c.isspace() or t.startswith("/*") or t.startswith("//"):
            continue
        out.append(t)
    return out


def _unquote(t: str) -> str:
    return t[1:-1] if len(t) >= 2 and t[0] == '"' and t[-1] == '"' else t


def parse_liberty_text(text: str, source: str = "<liberty>") -> Group:
    """Parse Liberty text into its top-level group (normally ``library``)."""
    toks = _tokens(text)
    n = len(toks)
    pos = 0

    def err(msg: str) -> LibertyError:
        ctx = " ".join(toks[max(0, pos - 6):pos + 4])
        return LibertyError(f"liberty file {source} cannot be parsed: {msg} near '{ctx}'")

    def parse_args() -> list[str]:
        nonlocal pos
        args: list[str] = []
        cur: list[str] = []
        pos += 1  # '('
        while pos < n and toks[pos] != ")":
            t = toks[pos]
            if t == ",":
                args.append(" ".join(cur))
                cur = []
            else:
                cur.append(_unquote(t))
            pos += 1
        if pos >= n:
            raise err("unterminated '('")
        pos += 1  # ')'
        if cur or args:
            args.append(" ".join(cur))
        return args

    def parse_body(group: Group) -> None:
        nonlocal pos
        while pos < n:
            t = toks[pos]
            if t == "}":
                pos += 1
                return
            if t == ";":
                pos += 1
                continue
            name = t
            pos += 1
            if pos >= n:
                raise err("unexpected end of file")
            nxt = toks[pos]
            if nxt == ":":
                pos += 1
                vals = []
                while pos < n and toks[pos] not in (";", "}"):
                    # a missing ';' at the end of a line: stop before the next 'name :'
                    if vals and pos + 1 < n and toks[pos + 1] in (":", "("):
                        break
                    vals.append(_unquote(toks[pos]))
                    pos += 1
                if pos < n and toks[pos] == ";":
                    pos += 1
                group.attrs[name] = " ".join(vals)
            elif nxt == "(":
                args = parse_args()
                if pos < n and toks[pos] == "{":
                    pos += 1
                    child = Group(name, args)
                    parse_body(child)
                    group.groups.append(child)
                else:
                    if pos < n and toks[pos] == ";":
                        pos += 1
                    group.attrs[name] = args
            else:
                raise err(f"expected ':' or '(' after '{name}'")
        if group.type != "<root>":
            raise err(f"group '{group.type}' is not closed")

    root = Group("<root>", [])
    parse_body(root)
    if not root.groups:
        raise LibertyError(f"liberty file {source} holds no group; expected 'library (name) {{ ... }}'")
    return root.groups[0]


# --------------------------------------------------------------------------------------
# Boolean functions
# --------------------------------------------------------------------------------------

_FTOKEN = re.compile(r"\s*(?:(?P<id>[A-Za-z_][A-Za-z0-9_\[\]\.]*)|(?P<const>[01])\b|(?P<op>[!'^*&+|()]))")


def _ftokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    s = expr.strip()
    while pos < len(s):
        if s[pos].isspace():
            # whitespace between two operands is an AND; remember it
            j = pos
            while j < len(s) and s[j].isspace():
                j += 1
            out.append(("ws", " "))
            pos = j
            continue
        m = _FTOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise LibertyError(f"cannot parse liberty function '{expr}' at '{s[pos:]}'")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_function(expr: str) -> tuple:
    """Parse a Liberty boolean function into a tree of tuples.

    Nodes: ``("var", name)``, ``("const", 0|1)``, ``("not", x)``, ``("and", x, y)``,
    ``("or", x, y)``, ``("xor", x, y)``. Precedence (Liberty): inversion, XOR, AND
    (``*``, ``&`` or whitespace), OR (``+``, ``|``).
    """
    raw = _ftokens(expr)
    # turn whitespace into AND only between an operand end and an operand start
    toks: list[tuple[str, str]] = []
    for i, t in enumerate(raw):
        if t[0] != "ws":
            toks.append(t)
            continue
        prev = toks[-1] if toks else None
        nxt = next((r for r in raw[i + 1:] if r[0] != "ws"), None)
        ends = prev is not None and (prev[0] in ("id", "const") or prev[1] in (")", "'"))
        starts = nxt is not None and (nxt[0] in ("id", "const") or nxt[1] in ("(", "!"))
        if ends and starts:
            toks.append(("op", "&"))
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def fail(msg):
        return LibertyError(f"cannot parse liberty function '{expr}': {msg}")

    def parse_or():
        nonlocal pos
        node = parse_and()
        while peek()[1] in ("+", "|"):
            pos += 1
            node = ("or", node, parse_and())
        return node

    def parse_and():
        nonlocal pos
        node = parse_xor()
        while peek()[1] in ("*", "&"):
            pos += 1
            node = ("and", node, parse_xor())
        return node

    def parse_xor():
        nonlocal pos
        node = parse_unary()
        while peek()[1] == "^":
            pos += 1
            node = ("xor", node, parse_unary())
        return node

    def parse_unary():
        nonlocal pos
        kind, val = peek()
        if val == "!":
            pos += 1
            node = ("not", parse_unary())
        elif val == "(":
            pos += 1
            node = parse_or()
            if peek()[1] != ")":
                raise fail("missing ')'")
            pos += 1
        elif kind == "id":
            pos += 1
            node = ("var", val)
        elif kind == "const":
            pos += 1
            node = ("const", int(val))
        else:
            raise fail(f"unexpected {val!r}")
        while peek()[1] == "'":
            pos += 1
            node = ("not", node)
        return node

    if not toks:
        raise fail("empty function")
    tree = parse_or()
    if pos != len(toks):
        raise fail(f"unexpected {toks[pos][1]!r}")
    return tree


def function_inputs(tree: tuple) -> list[str]:
    """The variable names a function tree uses, in first-use order."""
    out: list[str] = []

    def walk(t):
        if t[0] == "var":
            if t[1] not in out:
                out.append(t[1])
        elif t[0] != "const":
            for c in t[1:]:
                walk(c)

    walk(tree)
    return out


def _to_python(tree: tuple, names: dict[str, str]) -> str:
    k = tree[0]
    if k == "var":
        return names[tree[1]]
    if k == "const":
        return "_ONES" if tree[1] else "_ZERO"
    if k == "not":
        return f"(~{_to_python(tree[1], names)})"
    op = {"and": "&", "or": "|", "xor": "^"}[k]
    return f"({_to_python(tree[1], names)} {op} {_to_python(tree[2], names)})"


_FN_NAMESPACE = {"_ZERO": np.uint64(0), "_ONES": np.uint64(0xFFFFFFFFFFFFFFFF)}


@functools.lru_cache(maxsize=4096)
def compile_function(expr: str, pins: tuple[str, ...] | None = None) -> tuple[Callable, tuple[str, ...]]:
    """Compile a Liberty function to ``(fn, pin_order)``; ``fn(*words)`` works on uint64 arrays.

    ``pins`` fixes the argument order (default: order of first use in the expression).
    """
    tree = parse_function(expr)
    used = function_inputs(tree)
    order = tuple(pins) if pins is not None else tuple(used)
    missing = [u for u in used if u not in order]
    if missing:
        raise LibertyError(f"liberty function '{expr}' uses unknown pins {missing}")
    names = {p: f"p{i}" for i, p in enumerate(order)}
    body = _to_python(tree, names)
    src = f"lambda {', '.join(names[p] for p in order)}: {body}"
    fn = eval(compile(src, f"<liberty function {expr}>", "eval"), dict(_FN_NAMESPACE))  # noqa: S307
    return fn, order


def eval_function_bool(expr: str, values: dict[str, int]) -> int:
    """Evaluate a Liberty function on 0/1 values (for tests and truth tables)."""
    fn, order = compile_function(expr)
    words = [np.array([0xFFFFFFFFFFFFFFFF if values[p] else 0], dtype=np.uint64) for p in order]
    out = fn(*words) if order else fn()
    return int(np.asarray(out, dtype=np.uint64).reshape(-1)[0] & np.uint64(1))


# --------------------------------------------------------------------------------------
# Library model
# --------------------------------------------------------------------------------------

_UNIT = re.compile(r"^\s*([0-9.eE+-]*)\s*([a-zA-Z]+)\s*$")
_PREFIX = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3}


def _unit_scale(text: str, base: str, default: float) -> float:
    """'1ns' -> 1e-9 (base 's'); '1pf' -> 1e-12; '1nW' -> 1e-9."""
    if not text:
        return default
    m = _UNIT.match(str(text))
    if not m:
        return default
    mult = float(m.group(1)) if m.group(1) else 1.0
    unit = m.group(2)
    if unit.lower().endswith(base.lower()):
        prefix = unit[: len(unit) - len(base)]
        if prefix in _PREFIX:
            return mult * _PREFIX[prefix]
        if prefix.lower() in _PREFIX:
            return mult * _PREFIX[prefix.lower()]
    return default


def _floats(text: str | list[str]) -> list[float]:
    if isinstance(text, list):
        text = ",".join(text)
    return [float(x) for x in re.split(r"[,\s]+", str(text).strip()) if x]


@dataclass
class Table:
    """A Liberty lookup table with its axes named by template variables."""

    variables: tuple[str, ...]
    indices: tuple[np.ndarray, ...]
    values: np.ndarray   # shape (len(index_1), len(index_2)) or (n,) or ()

    def lookup(self, **axes: float) -> float:
        """Value at the given axis values (linear interpolation, linear extrapolation).

        Axis keywords: ``load`` (total_output_net_capacitance, library units) and ``slew``
        (input transition, library units); variables the table lacks are ignored.
        """
        if self.values.ndim == 0 or self.values.size == 1:
            return float(self.values.reshape(-1)[0])
        coords = []
        for var in self.variables:
            if "capacitance" in var:
                coords.append(axes.get("load", 0.0))
            elif "transition" in var:
                coords.append(axes.get("slew", 0.0))
            else:
                coords.append(0.0)
        if self.values.ndim == 1:
            return _interp1(self.indices[0], self.values, coords[0])
        # 2-D: interpolate along axis 2 in each bracketing row of axis 1
        i0, i1, t = _bracket(self.indices[0], coords[0])
        r0 = _interp1(self.indices[1], self.values[i0], coords[1])
        r1 = _interp1(self.indices[1], self.values[i1], coords[1])
        return float(r0 + (r1 - r0) * t)


def _bracket(idx: np.ndarray, x: float) -> tuple[int, int, float]:
    if len(idx) == 1:
        return 0, 0, 0.0
    j = int(np.searchsorted(idx, x))
    j = min(max(j, 1), len(idx) - 1)
    x0, x1 = idx[j - 1], idx[j]
    t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
    return j - 1, j, float(t)


def _interp1(idx: np.ndarray, vals: np.ndarray, x: float) -> float:
    i0, i1, t = _bracket(idx, x)
    return float(vals[i0] + (vals[i1] - vals[i0]) * t)


@dataclass
class InternalPower:
    related_pin: str | None
    rise: Table | None
    fall: Table | None
    when: str | None = None


@dataclass
class TimingArc:
    related_pin: str
    rise_transition: Table | None
    fall_transition: Table | None


@dataclass
class Pin:
    name: str
    direction: str
    capacitance: float = 0.0          # library capacitance units
    function: str | None = None
    internal_power: list[InternalPower] = field(default_factory=list)
    timing: list[TimingArc] = field(default_factory=list)


@dataclass
class Cell:
    name: str
    area: float
    leakage: float                      # library leakage units
    leakage_states: list[tuple[str, float]]  # (when, value); when '' = unconditional
    pins: dict[str, Pin]
    sequential: bool = False
    dont_use: bool = False

    @property
    def inputs(self) -> list[str]:
        return [p.name for p in self.pins.values() if p.direction == "input"]

    @property
    def outputs(self) -> list[str]:
        return [p.name for p in self.pins.values() if p.direction in ("output", "inout")]


@dataclass
class Library:
    """The parts of a Liberty library that axcnn uses (units converted to SI by ``*_si``)."""

    name: str
    path: Path
    sha256: str
    time_si: float          # seconds per library time unit
    cap_si: float           # farads per library capacitance unit
    voltage_si: float       # volts per library voltage unit
    leakage_si: float       # watts per library leakage unit
    nom_voltage: float      # library voltage units
    cells: dict[str, Cell]

    @property
    def energy_si(self) -> float:
        """Joules per internal-power table unit (capacitance unit x voltage unit^2)."""
        return self.cap_si * self.voltage_si ** 2

    @property
    def voltage_V(self) -> float:
        return self.nom_voltage * self.voltage_si

    def cell(self, name: str) -> Cell:
        try:
            return self.cells[name]
        except KeyError:
            raise LibertyError(f"cell '{name}' is not in liberty {self.path}") from None

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256,
                "voltage_V": self.voltage_V, "time_unit_s": self.time_si,
                "capacitance_unit_F": self.cap_si, "leakage_unit_W": self.leakage_si,
                "cells": len(self.cells)}


def _table(group: Group | None, templates: dict[str, tuple[str, ...]],
           template_idx: dict[str, tuple[np.ndarray, ...]]) -> Table | None:
    if group is None:
        return None
    tmpl = group.args[0] if group.args else ""
    variables = templates.get(tmpl, ())
    idx_default = template_idx.get(tmpl, ())
    indices = []
    for k in range(1, 4):
        key = f"index_{k}"
        if key in group.attrs:
            indices.append(np.array(_floats(group.attrs[key]), dtype=np.float64))
        elif k - 1 < len(idx_default):
            indices.append(idx_default[k - 1])
    raw = group.attrs.get("values")
    if raw is None:
        return None
    rows = raw if isinstance(raw, list) else [raw]
    vals = [_floats(r) for r in rows]
    if tmpl == "scalar" or not variables:
        arr = np.array([v for row in vals for v in row], dtype=np.float64)
        return Table((), (), arr.reshape(()) if arr.size == 1 else arr)
    if len(variables) == 1:
        arr = np.array([v for row in vals for v in row], dtype=np.float64)
        return Table(variables[:1], (indices[0],), arr)
    arr = np.array(vals, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (len(indices[0]), len(indices[1])):
        try:
            arr = arr.reshape(len(indices[0]), len(indices[1]))
        except ValueError:
            return None
    return Table(variables[:2], (indices[0], indices[1]), arr)


def _build_library(root: Group, path: Path, sha: str) -> Library:
    if root.type != "library":
        raise LibertyError(f"{path} is not a liberty library (top group is '{root.type}')")
    a = root.attrs
    time_si = _unit_scale(a.get("time_unit", "1ns"), "s", 1e-9)
    volt_si = _unit_scale(a.get("voltage_unit", "1V"), "V", 1.0)
    leak_si = _unit_scale(a.get("leakage_power_unit", "1nW"), "W", 1e-9)
    cap = a.get("capacitive_load_unit")
    cap_si = 1e-12
    if isinstance(cap, list) and len(cap) >= 2:
        try:
            cap_si = float(cap[0]) * _unit_scale("1" + cap[1].strip(), "F", 1e-12)
        except ValueError:
            pass
    nom_v = a.get("nom_voltage")
    if nom_v is None:
        oc = root.first("operating_conditions")
        nom_v = oc.attrs.get("voltage") if oc else None
    if nom_v is None:
        raise LibertyError(f"liberty {path} has no nom_voltage; cannot compute power")
    templates: dict[str, tuple[str, ...]] = {}
    template_idx: dict[str, tuple[np.ndarray, ...]] = {}
    for g in root.groups:
        if g.type in ("lu_table_template", "power_lut_template"):
            vars_ = tuple(g.attrs[f"variable_{k}"] for k in (1, 2, 3) if f"variable_{k}" in g.attrs)
            templates[g.name] = vars_
            template_idx[g.name] = tuple(
                np.array(_floats(g.attrs[f"index_{k}"]), dtype=np.float64)
                for k in (1, 2, 3) if f"index_{k}" in g.attrs)
    cells: dict[str, Cell] = {}
    for cg in root.sub("cell"):
        pins: dict[str, Pin] = {}
        pin_groups = list(cg.sub("pin"))
        for bus in cg.sub("bus") + cg.sub("bundle"):
            pin_groups += bus.sub("pin")
        for pg in pin_groups:
            for pname in pg.args:
                pname = pname.strip()
                pin = Pin(pname, pg.attrs.get("direction", "input").strip())
                capv = pg.attrs.get("capacitance")
                if capv is None:
                    rc, fc = pg.attrs.get("rise_capacitance"), pg.attrs.get("fall_capacitance")
                    vals = [float(x) for x in (rc, fc) if x is not None]
                    capv = max(vals) if vals else 0.0
                pin.capacitance = float(capv)
                fn = pg.attrs.get("function")
                pin.function = fn.strip() if isinstance(fn, str) and fn.strip() else None
                for ip in pg.sub("internal_power"):
                    rel = ip.attrs.get("related_pin")
                    both = ip.first("power")
                    rise = _table(ip.first("rise_power") or both, templates, template_idx)
                    fall = _table(ip.first("fall_power") or both, templates, template_idx)
                    pin.internal_power.append(
                        InternalPower(rel.strip() if rel else None, rise, fall, ip.attrs.get("when")))
                for tg in pg.sub("timing"):
                    rel = tg.attrs.get("related_pin")
                    ttype = tg.attrs.get("timing_type", "combinational")
                    if rel is None or "three_state" in ttype:
                        continue
                    for r in rel.split():
                        pin.timing.append(TimingArc(
                            r, _table(tg.first("rise_transition"), templates, template_idx),
                            _table(tg.first("fall_transition"), templates, template_idx)))
                pins[pname] = pin
        leak_states = []
        for lg in cg.sub("leakage_power"):
            try:
                leak_states.append((lg.attrs.get("when", "").strip(), float(lg.attrs.get("value", 0.0))))
            except ValueError:
                pass
        sequential = bool(cg.sub("ff") or cg.sub("latch") or cg.sub("statetable")
                          or cg.sub("ff_bank") or cg.sub("latch_bank"))
        try:
            area = float(cg.attrs.get("area", 0.0))
        except ValueError:
            area = 0.0
        try:
            leak = float(cg.attrs.get("cell_leakage_power", 0.0))
        except ValueError:
            leak = 0.0
        dont_use = str(cg.attrs.get("dont_use", "false")).strip().lower() == "true"
        cells[cg.name] = Cell(cg.name, area, leak, leak_states, pins, sequential, dont_use)
    return Library(root.name, path, sha, time_si, cap_si, volt_si, leak_si, float(nom_v), cells)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime: float, size: int) -> Library:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LibertyError(f"cannot read liberty file {p}: {exc}") from None
    root = parse_liberty_text(text, str(p))
    return _build_library(root, p, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest())


def read_liberty(path: str | os.PathLike) -> Library:
    """Parse a liberty file (cached per path, mtime and size)."""
    p = Path(path).resolve()
    if not p.is_file():
        raise LibertyError(f"liberty file {p} does not exist")
    st = p.stat()
    return _read_cached(str(p), st.st_mtime, st.st_size)


# --------------------------------------------------------------------------------------
# The default library: find, install
# --------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where liberty files are installed: ``$AXCNN_CACHE/liberty`` or ``~/.cache/axcnn/liberty``."""
    base = os.environ.get("AXCNN_CACHE", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "axcnn"
    return root / "liberty"


def default_liberty_path(cache: str | os.PathLike | None = None) -> Path:
    """Where the default (osu018) liberty lives once installed."""
    base = Path(cache) if cache else cache_dir()
    return base / DEFAULT_NAME / "osu018_stdcells.lib"


def default_liberty(*, install: bool = False) -> Path:
    """The default liberty file: ``$AXCNN_LIBERTY``, the cache, or a system qflow install.

    Raises ToolNotFound (exit 3) with the setup command when it is not installed (unless
    ``install`` is true, in which case it is installed).
    """
    env = os.environ.get("AXCNN_LIBERTY", "").strip()
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ToolNotFound(f"AXCNN_LIBERTY={env} does not exist; point it to a .lib file or "
                               f"unset it to use the default ({SETUP_COMMAND})")
        return p
    p = default_liberty_path()
    if p.is_file():
        return p
    for sys_path in SYSTEM_LOCATIONS:
        if Path(sys_path).is_file():
            return Path(sys_path)
    if install:
        return install_default_liberty()
    raise ToolNotFound(
        f"the default liberty (OSU 0.18 um cells from Debian's {DEFAULT_PACKAGE}) is not "
        f"installed in {p.parent}; run '{SETUP_COMMAND}' (or by hand: {MANUAL_COMMANDS}), "
        "or pass --liberty FILE.lib"
    )


def resolve_liberty(liberty: str | os.PathLike | None) -> Path:
    """``None`` or ``'osu018'`` -> the default library; anything else must be a file."""
    if liberty is None or str(liberty) in ("", DEFAULT_NAME, "default"):
        return default_liberty()
    p = Path(liberty).expanduser()
    if not p.is_file():
        raise ConfigError(f"liberty file '{liberty}' does not exist; pass a .lib file or omit "
                          f"--liberty for the default ({DEFAULT_NAME})")
    return p


def install_default_liberty(cache: str | os.PathLike | None = None, *,
                            timeout: float | None = None, force: bool = False) -> Path:
    """Download Debian's ``qflow-tech-osu018`` and unpack its liberty into the cache.

    Uses ``apt-get download`` (no root needed, nothing is installed system-wide) and
    ``dpkg-deb -x``. Returns the path of ``osu018_stdcells.lib``.
    """
    from ..toolchain import ToolFailed, find_tool, run_tool

    target = default_liberty_path(cache)
    if target.is_file() and not force:
        return target
    try:
        find_tool("apt-get")
        find_tool("dpkg-deb")
    except ToolNotFound as exc:
        raise ToolNotFound(
            f"cannot install the default liberty automatically ({exc}); on a machine with apt, "
            f"run: {MANUAL_COMMANDS}; or pass --liberty FILE.lib"
        ) from None
    dest = target.parent
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="axcnn-liberty-", dir=dest.parent))
    try:
        try:
            run_tool("apt-get", ["download", DEFAULT_PACKAGE], cwd=work, timeout=timeout,
                     log_name="apt-get-download")
        except ToolFailed as exc:
            last = (exc.stderr_tail.splitlines() or ["no output"])[-1].strip()
            raise ToolNotFound(
                f"'apt-get download {DEFAULT_PACKAGE}' failed ({last}); "
                "run 'sudo apt-get update' first (the package lists may be empty), or pass "
                "--liberty FILE.lib") from None
        debs = sorted(work.glob(f"{DEFAULT_PACKAGE}_*.deb"))
        if not debs:
            raise ToolNotFound(f"apt-get download {DEFAULT_PACKAGE} produced no .deb in {work}; "
                               "run 'apt-get update' first")
        run_tool("dpkg-deb", ["-x", debs[0].name, "x"], cwd=work, timeout=timeout,
                 log_name="dpkg-deb")
        copied = {}
        for src, name in DEFAULT_FILES.items():
            s = work / "x" / src
            if s.is_file():
                shutil.copyfile(s, dest / name)
                copied[name] = file_sha256(dest / name)
        if "osu018_stdcells.lib" not in copied:
            raise ToolNotFound(f"{debs[0].name} does not contain osu018_stdcells.lib")
        (dest / "SOURCE.json").write_text(json.dumps(
            {"package": DEFAULT_PACKAGE, "deb": debs[0].name, "files": copied}, indent=2) + "\n")
        for logf in [*work.glob("*.log"), work / "commands.sh"]:
            shutil.copyfile(logf, dest / logf.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
