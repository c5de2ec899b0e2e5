"""Candidates and the sources that produce them.

A :class:`Candidate` is one multiplier to evaluate: either a LUT (a file or ``builtin:NAME``)
or a circuit (a Verilog file, optionally with a C model). Its identity is a content hash
(:attr:`Candidate.key`): the LUT's sha256, or the sha256 of the Verilog text with comments
and whitespace normalised, so a circuit found twice (two SubXPAT runs, a renamed file, a
timestamped name) is evaluated once.

Every source implements :class:`Source`: ``check()`` fails fast (missing folder, tool or
checkout) and ``candidates(ctx)`` yields candidates, possibly over hours (SubXPAT yields each
circuit as soon as it is accepted). Sources run in the coordinator; they only find and name
candidates, the expensive work happens in the executor's workers.

Built-in sources here: :class:`BuiltinSource` (families over parameter grids) and
:class:`FolderSource` (LUT files and Verilog files); :mod:`~axcnn.explore.evoapprox` and
:mod:`~axcnn.explore.subxpat` add the other two.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError
from .spec import ExploreSpec, SourceSpec

log = logging.getLogger("axcnn.explore")

LUT_SUFFIXES = (".npy", ".npz", ".bin")
VERILOG_SUFFIXES = (".v", ".sv")


def normalized_verilog(text: str) -> str:
    """Verilog text without comments and with whitespace collapsed (the identity of a circuit)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return " ".join(text.split())


def verilog_hash(paths: list[Path] | Path) -> str:
    files = [paths] if isinstance(paths, Path) else list(paths)
    h = hashlib.sha256(b"axcnn-verilog-v1:")
    for p in files:
        h.update(normalized_verilog(Path(p).read_text(errors="replace")).encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Candidate:
    """One multiplier to evaluate (picklable: it travels to the workers)."""

    name: str
    source: str
    kind: str                        # "lut" | "circuit"
    content_hash: str
    lut: str | None = None           # kind lut: a LUT file or builtin:NAME
    verilog: str | None = None       # kind circuit: the Verilog file
    c_model: str | None = None       # EvoApproxLib: the C model (LUT by gcc)
    top: str | None = None
    ports: str = "auto"
    signed: bool | None = None
    info: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``lut:<sha256>`` or ``circuit:<sha256>``: what the candidate *is*."""
        return f"{self.kind}:{self.content_hash}"


@dataclass
class SourceContext:
    """What a source may use: the explore folder, the spec and a stop flag."""

    explore_dir: Path
    spec: ExploreSpec
    stop: threading.Event = field(default_factory=threading.Event)

    def work_dir(self, *parts: str) -> Path:
        p = self.explore_dir.joinpath("sources", *parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


class Source:
    """Interface of a candidate source."""

    type = "source"

    def __init__(self, spec: SourceSpec, explore: ExploreSpec):
        self.spec = spec
        self.explore = explore
        self.options = dict(spec.options)

    @property
    def label(self) -> str:
        return self.spec.label or self.type

    def check(self) -> None:
        """Raise (ConfigError / ToolNotFound) if the source cannot run here."""

    def candidates(self, ctx: SourceContext) -> Iterator[Candidate]:  # pragma: no cover
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# built-in families
# --------------------------------------------------------------------------------------

def family_names(families: list[str] | None, bits: int) -> list[str]:
    """The default grid's names of the given families (all families when None)."""
    from ..lut import family_grid
    from ..lut.families import FAMILIES

    grid = family_grid(bits)
    if not families:
        return grid
    out = []
    for fam in families:
        if fam not in FAMILIES:
            raise ConfigError(f"explore spec: unknown built-in family {fam!r}; families: "
                              f"{', '.join(FAMILIES)}")
        out += [n for n in grid if re_family(n) == fam]
    return out


def re_family(name: str) -> str:
    from ..lut.families import FAMILIES

    for fam in FAMILIES.values():
        if re.fullmatch(fam.pattern, name):
            return fam.name
    return "?"


class BuiltinSource(Source):
    """Built-in families over parameter grids (``families:``) and/or explicit ``names:``.

    With hardware evaluation on, each multiplier becomes a circuit (its generated Verilog is
    written under ``sources/builtin/``); otherwise it is the functional LUT ``builtin:NAME``.
    """

    type = "builtin"

    def _names(self) -> list[str]:
        bits = int(self.options.get("bits", self.explore.bits))
        names = list(self.options.get("names") or [])
        fams = self.options.get("families")
        if fams or not names:
            names = family_names(list(fams) if fams else None, bits) + names
        seen, out = set(), []
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append(n)
        return out

    def check(self) -> None:
        from ..lut import parse_builtin

        bits = int(self.options.get("bits", self.explore.bits))
        signed = bool(self.options.get("signed", self.explore.signed))
        for n in self._names():
            parse_builtin(str(n), bits, signed)

    def candidates(self, ctx: SourceContext) -> Iterator[Candidate]:
        from ..lut import builtin, parse_builtin

        bits = int(self.options.get("bits", self.explore.bits))
        signed = bool(self.options.get("signed", self.explore.signed))
        for n in self._names():
            if ctx.stop.is_set():
                return
            spec = parse_builtin(str(n), bits, signed)
            info = {"family": spec.family, "params": dict(spec.params), "spec": spec.spec}
            if self.explore.hardware is not None:
                from ..hw.verilog import generate_verilog

                path = ctx.work_dir("builtin") / f"{spec.name}.v"
                text = generate_verilog(spec)
                if not path.is_file() or path.read_text() != text:
                    path.write_text(text)
                yield Candidate(spec.name, self.label, "circuit", verilog_hash(path),
                                verilog=str(path), ports="plain", signed=signed, info=info)
            else:
                lut = builtin(spec.spec)
                yield Candidate(spec.name, self.label, "lut", lut.sha256, lut=spec.spec,
                                signed=signed, info=info)


# --------------------------------------------------------------------------------------
# a folder of LUTs or Verilog files
# --------------------------------------------------------------------------------------

class FolderSource(Source):
    """Every LUT file (``.npy``/``.npz``/``.bin``) and Verilog file (``.v``) of a folder."""

    type = "folder"

    @property
    def folder(self) -> Path:
        return self.explore.path(self.options["path"])

    def check(self) -> None:
        if not self.folder.is_dir():
            raise ConfigError(f"explore source folder '{self.folder}' does not exist")
        if not self._files():
            raise ConfigError(f"explore source folder '{self.folder}' holds no LUT "
                              f"({', '.join(LUT_SUFFIXES)}) or Verilog (.v) files")

    def _files(self) -> list[Path]:
        pattern = self.options.get("pattern", "*")
        return sorted(p for p in self.folder.iterdir() if p.is_file()
                      and p.suffix.lower() in LUT_SUFFIXES + VERILOG_SUFFIXES
                      and fnmatch.fnmatch(p.name, pattern))

    def candidates(self, ctx: SourceContext) -> Iterator[Candidate]:
        from ..errors import LUTError
        from ..lut import load_lut

        signed = self.options.get("signed", None)
        for p in self._files():
            if ctx.stop.is_set():
                return
            if p.suffix.lower() in LUT_SUFFIXES:
                try:
                    lut = load_lut(p, signed=signed if signed is not None else
                                   (None if p.suffix == ".npz" else self.explore.signed))
                except LUTError as exc:
                    log.warning("skipping %s: %s", p, exc)
                    continue
                yield Candidate(p.stem, self.label, "lut", lut.sha256, lut=str(p.resolve()),
                                signed=lut.signed)
            else:
                yield Candidate(p.stem, self.label, "circuit", verilog_hash(p),
                                verilog=str(p.resolve()), ports=self.options.get("ports", "auto"),
                                top=self.options.get("top"),
                                signed=signed if signed is not None else self.explore.signed)


def make_sources(spec: ExploreSpec) -> list[Source]:
    """The :class:`Source` objects of a spec, in order."""
    from .evoapprox import EvoApproxSource
    from .subxpat import SubXPATSource

    types = {"builtin": BuiltinSource, "folder": FolderSource, "evoapprox": EvoApproxSource,
             "subxpat": SubXPATSource}
    out = []
    labels: dict[str, int] = {}
    for s in spec.sources:
        src = types[s.type](s, spec)
        labels[src.label] = labels.get(src.label, 0) + 1
        out.append(src)
    # make labels unique (builtin, builtin-2, ...) so status can tell sources apart
    seen: dict[str, int] = {}
    for src in out:
        if labels[src.label] > 1:
            seen[src.label] = seen.get(src.label, 0) + 1
            if seen[src.label] > 1:
                src.spec = SourceSpec(src.spec.type, src.spec.options,
                                      f"{src.label}-{seen[src.label]}")
    return out
