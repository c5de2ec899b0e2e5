"""Exports of the results store: the seed's CSV, Parquet and JSON.

The seed's CSV schema is ``file,area,power,delay,pda,mean_ae,mean_ae_cnn,max_ae,accuracy``
(SEED_SPEC 6.2), with ``file`` = ``<candidate name>_<experiment name>``. Mapping:
area = ``area_um2`` (um^2), power = ``power_w`` (W; the workload or vectorless figure chosen
by the spec), delay = ``delay_ns`` (ns), pda = area * power * delay, mean_ae = ``mae``,
mean_ae_cnn = ``w_mae`` (the workload-weighted mean absolute error), max_ae = ``wce``,
accuracy = ``accuracy`` (%). Missing values are empty cells. Parquet and JSON hold every
column of the store.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..fileio import atomic_path, write_bytes
from ..errors import BackendUnavailable
from .store import COLUMN_NAMES, ResultsStore, store_path

SEED_COLUMNS = ("file", "area", "power", "delay", "pda", "mean_ae", "mean_ae_cnn", "max_ae",
                "accuracy")
_SEED_MAP = {"area": "area_um2", "power": "power_w", "delay": "delay_ns", "pda": "pda",
             "mean_ae": "mae", "mean_ae_cnn": "w_mae", "max_ae": "wce", "accuracy": "accuracy"}


def load_rows(folder: str | os.PathLike, *, status: str | None = "ok",
              all_settings: bool = False) -> tuple[list[dict], dict]:
    """(rows, meta) of an exploration; by default the ``ok`` rows of the current settings."""
    with ResultsStore(store_path(folder), readonly=True) as store:
        meta = store.meta()
        rows = store.rows(status=status,
                          settings_hash=None if all_settings else meta.get("settings_hash"))
    return rows, meta


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def seed_csv_text(rows: list[dict], experiment: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SEED_COLUMNS)
    for r in sorted(rows, key=lambda r: (r["name"] or "", r["key"])):
        w.writerow([f"{r['name']}_{experiment}"] + [_cell(r.get(_SEED_MAP[c])) for c in SEED_COLUMNS[1:]])
    return buf.getvalue()


def export_csv(folder: str | os.PathLike, out: str | os.PathLike, **kw) -> Path:
    """Write the seed-compatible CSV of an exploration."""
    rows, meta = load_rows(folder, **kw)
    return write_bytes(Path(out), seed_csv_text(rows, meta.get("name") or "explore").encode())


def export_parquet(folder: str | os.PathLike, out: str | os.PathLike, **kw) -> Path:
    """Write every column of the store as Parquet (needs pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BackendUnavailable("Parquet export needs pyarrow: pip install 'axcnn[explore]' (or "
                                 "pip install pyarrow); the CSV and JSON exports need nothing") from None
    from .store import COLUMNS

    rows, _ = load_rows(folder, **kw)
    types = {"key": pa.string(), **{c: (pa.float64() if t.startswith("REAL") else pa.int64()
                                        if t.startswith("INTEGER") else pa.string())
                                    for c, t in COLUMNS}}
    table = pa.table({c: pa.array([r.get(c) for r in rows], type=types[c]) for c in COLUMN_NAMES})
    path = Path(out)
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp)
    return path


def export_json(folder: str | os.PathLike, out: str | os.PathLike | None = None, **kw) -> str:
    rows, meta = load_rows(folder, **kw)
    for r in rows:
        for k in ("info", "notes"):
            if isinstance(r.get(k), str):
                try:
                    r[k] = json.loads(r[k])
                except ValueError:
                    pass
    text = json.dumps({"name": meta.get("name"), "settings_hash": meta.get("settings_hash"),
                       "baseline_accuracy": meta.get("baseline_accuracy"), "rows": rows},
                      indent=2, default=str) + "\n"
    if out is not None:
        write_bytes(Path(out), text.encode())
    return text
