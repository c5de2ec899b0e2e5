"""The results store: one SQLite file per exploration, written by the coordinator only.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version`` and ``meta``):

``results``  one row per (candidate, settings): ``key`` = sha256 of the candidate's content
             key (``lut:<sha256>`` / ``circuit:<sha256>``) and the settings hash, the
             PRIMARY KEY, so a row can never be written twice. ``status`` is ``ok``,
             ``partial`` (LUT, errors and hardware done, CNN accuracy pending: a resumed
             sweep goes straight to the CNN) or ``failed`` (with ``error``, ``stage`` and
             ``attempts``, the number of failed tries); an ``ok`` row is never overwritten, a
             failed one is retried until ``attempts`` reaches the spec's ``max_attempts``.
``cnn``      CNN accuracy per (LUT sha256, CNN settings hash): two circuits with the same
             function (SubXPAT often accepts several) share one CNN evaluation.
``meta``     key/value: schema version, spec, settings, baseline accuracy, created/updated.

Columns of ``results`` are listed in :data:`COLUMNS`; metrics use axcnn's names (``mae``,
``wce``, ``w_mae`` = the seed's ``mean_ae_cnn`` ...), hardware is in um^2, ns and W.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError

SCHEMA_VERSION = 1
STORE_NAME = "results.sqlite"

#: (name, SQL type) of every results column after the key columns
COLUMNS: tuple[tuple[str, str], ...] = (
    ("candidate_key", "TEXT NOT NULL"), ("settings_hash", "TEXT NOT NULL"),
    ("name", "TEXT"), ("source", "TEXT"), ("kind", "TEXT"), ("status", "TEXT NOT NULL"),
    ("stage", "TEXT"), ("error", "TEXT"), ("attempts", "INTEGER NOT NULL DEFAULT 1"),
    ("lut_sha256", "TEXT"), ("a_bits", "INTEGER"), ("w_bits", "INTEGER"), ("signed", "INTEGER"),
    ("exact", "INTEGER"),
    ("mae", "REAL"), ("wce", "REAL"), ("mred", "REAL"), ("ep", "REAL"), ("bias", "REAL"),
    ("mse", "REAL"), ("nmed", "REAL"),
    ("w_mae", "REAL"), ("w_wce", "REAL"), ("w_mred", "REAL"), ("w_ep", "REAL"),
    ("w_bias", "REAL"), ("w_mse", "REAL"),
    ("area_um2", "REAL"), ("delay_ns", "REAL"), ("power_w", "REAL"),
    ("power_workload_w", "REAL"), ("power_vectorless_w", "REAL"), ("energy_pj", "REAL"),
    ("pda", "REAL"), ("cells", "INTEGER"),
    ("accuracy", "REAL"), ("accuracy_drop", "REAL"), ("cnn_run", "TEXT"),
    ("eda_seconds", "REAL"), ("cnn_seconds", "REAL"),
    ("workdir", "TEXT"), ("report", "TEXT"), ("verilog", "TEXT"), ("info", "TEXT"),
    ("notes", "TEXT"), ("created_at", "REAL"), ("updated_at", "REAL"),
)
COLUMN_NAMES = ("key",) + tuple(c for c, _ in COLUMNS)
NUMERIC = tuple(c for c, t in COLUMNS if t.startswith(("REAL", "INTEGER")))


def _schema() -> str:
    cols = ",\n  ".join(f"{c} {t}" for c, t in COLUMNS)
    return f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS results (
  key TEXT PRIMARY KEY,
  {cols},
  UNIQUE (candidate_key, settings_hash)
);
CREATE INDEX IF NOT EXISTS results_status ON results (status);
CREATE INDEX IF NOT EXISTS results_lut ON results (lut_sha256);
CREATE TABLE IF NOT EXISTS cnn (
  lut_sha256 TEXT NOT NULL, cnn_hash TEXT NOT NULL, accuracy REAL, run_dir TEXT,
  best_epoch INTEGER, epochs INTEGER, seconds REAL, created_at REAL,
  PRIMARY KEY (lut_sha256, cnn_hash)
);
"""


class ResultsStore:
    """The SQLite results of one exploration (see the module docstring)."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise ConfigError(f"no results store at '{self.path}'; run 'axcnn explore run' "
                                  "first (or pass the exploration's folder)")
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.row_factory = sqlite3.Row
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not readonly:
            self.conn.executescript(_schema())
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._set_meta("schema_version", SCHEMA_VERSION)
            self._set_meta("created_at", time.time())
            self.conn.commit()
        elif version != SCHEMA_VERSION:
            if version == 0:
                raise ConfigError(f"'{self.path}' is not an axcnn results store")
            raise ConfigError(f"results store '{self.path}' has schema version {version}; this "
                              f"axcnn reads version {SCHEMA_VERSION}: export it with the axcnn "
                              "that wrote it, or start a new exploration folder")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.conn:
            yield self.conn

    # ------------------------------------------------------------------ meta
    def _set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                          "UPDATE SET value=excluded.value", (key, json.dumps(value, default=str)))

    def set_meta(self, **items: Any) -> None:
        with self._tx():
            for k, v in items.items():
                self._set_meta(k, v)

    def meta(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self.conn.execute("SELECT * FROM meta")}

    # ------------------------------------------------------------------ results
    def status_of(self, key: str) -> tuple[str, int] | None:
        r = self.conn.execute("SELECT status, attempts FROM results WHERE key=?", (key,)).fetchone()
        return (r["status"], int(r["attempts"])) if r else None

    def done(self, key: str, max_attempts: int) -> bool:
        """True when the row is finished: ok, or failed ``max_attempts`` times."""
        st = self.status_of(key)
        return st is not None and (st[0] == "ok" or (st[0] == "failed" and st[1] >= max_attempts))

    def write(self, row: dict[str, Any]) -> bool:
        """Insert or complete one row; an ``ok`` row is never replaced. True if written."""
        now = time.time()
        row = {k: v for k, v in row.items() if k in COLUMN_NAMES}
        for k in ("info", "notes"):
            if k in row and not isinstance(row[k], (str, type(None))):
                row[k] = json.dumps(row[k], default=str)
        row.setdefault("created_at", now)
        row["updated_at"] = now
        if row.get("status") in ("ok", "partial"):
            row.setdefault("error", None)
            row.setdefault("stage", None)
        permanent = row.pop("attempts", None)
        failed = row.get("status") == "failed"
        row["attempts"] = permanent if permanent is not None else int(failed)
        cols = list(row)
        updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in ("key", "created_at", "attempts"))
        bump = ("MAX(results.attempts + 1, excluded.attempts)" if failed else "results.attempts")
        sql = (f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
               f"ON CONFLICT(key) DO UPDATE SET {updates}, attempts={bump} "
               "WHERE results.status != 'ok'")
        with self._tx() as c:
            cur = c.execute(sql, [row[k] for k in cols])
            return cur.rowcount > 0

    def rows(self, status: str | None = None, settings_hash: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM results", []
        cond = []
        if status:
            cond.append("status=?")
            args.append(status)
        if settings_hash:
            cond.append("settings_hash=?")
            args.append(settings_hash)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY created_at, key"
        return [dict(r) for r in self.conn.execute(q, args)]

    def row(self, key: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM results WHERE key=?", (key,)).fetchone()
        return dict(r) if r else None

    def counts(self) -> dict[str, dict[str, int]]:
        """``{source: {status: n}}``."""
        out: dict[str, dict[str, int]] = {}
        for r in self.conn.execute("SELECT source, status, COUNT(*) AS n FROM results "
                                   "GROUP BY source, status"):
            out.setdefault(r["source"] or "?", {})[r["status"]] = r["n"]
        return out

    # ------------------------------------------------------------------ CNN cache
    def cnn_result(self, lut_sha256: str, cnn_hash: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM cnn WHERE lut_sha256=? AND cnn_hash=?",
                              (lut_sha256, cnn_hash)).fetchone()
        return dict(r) if r else None

    def write_cnn(self, lut_sha256: str, cnn_hash: str, res: dict) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO cnn (lut_sha256, cnn_hash, accuracy, run_dir, best_epoch, epochs, "
                      "seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      (lut_sha256, cnn_hash, res["accuracy"], res.get("run_dir"),
                       res.get("best_epoch"), res.get("epochs"), res.get("seconds"), time.time()))


def store_path(explore_dir: str | Path) -> Path:
    """The store inside an exploration folder (or the path itself if it is a store file)."""
    p = Path(explore_dir)
    return p if p.suffix in (".sqlite", ".db") else p / STORE_NAME
