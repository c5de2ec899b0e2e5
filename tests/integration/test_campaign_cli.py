"""Campaigns: time-boxed chunks resume where they stopped; the table reflects finished runs."""

import json

import pytest

PLAN = """
model: lenet5
dataset: synthetic
exact: {epochs: 2}
quantized: {epochs: 0}
approximate: {epochs: 1}
retrain: [none, ste]
reference_power: 2.0
train_subset: 400
test_subset: 200
luts:
  - {source: builtin:trunc8, power: 1.0, label: T8}
  - {source: builtin:drum3@8s, signed: true}
"""


def test_campaign_chunks_resume_and_tabulate(tmp_path, cli):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    runs = tmp_path / "runs"
    first = cli("campaign", "run", plan, "--runs-dir", runs, "--time-budget", "0.0001", "--no-progress")
    assert first.returncode == 75, first.stderr
    assert "rerun to continue" in first.stdout
    done = cli("campaign", "run", plan, "--runs-dir", runs, "--prune", "--no-progress", check=0)
    assert "7/7 runs finished" in done.stdout
    base = runs / "lenet5-synthetic"
    assert sorted(p.name for p in base.iterdir() if p.name.startswith("quantized")) == ["quantized-8s", "quantized-8u"]
    assert not list(base.glob("*/last.pt"))  # pruned
    assert len(list(base.glob("*/best.pt"))) == 7
    again = cli("campaign", "run", plan, "--runs-dir", runs, "--no-progress", check=0)
    assert "7/7 runs finished" in again.stdout
    out = cli("campaign", "table", plan, "--runs-dir", runs, "--json", tmp_path / "t.json", check=0)
    assert "| T8 |" in out.stdout and "0.500" in out.stdout  # relative power 1.0 / 2.0
    assert "| s/epoch (STE) |" in out.stdout     # seconds per retraining epoch, per trained rule
    data = json.loads((tmp_path / "t.json").read_text())
    assert [m["multiplier"] for m in data["multipliers"]] == ["T8", "drum3_8s"]
    for m in data["multipliers"]:
        assert set(m["accuracy"]) == {"none", "ste"} and all(v is not None for v in m["accuracy"].values())
    res = json.loads(next(base.glob("approximate-8u-trunc8*-ste")).joinpath("result.json").read_text())
    assert m["accuracy"] and data["multipliers"][0]["accuracy"]["ste"] == res["accuracy"]


def test_bad_plan_is_one_line(tmp_path, cli):
    plan = tmp_path / "plan.yaml"
    plan.write_text("model: lenet5\n")
    out = cli("campaign", "run", plan)
    assert out.returncode == 2 and "dataset" in out.stderr and "Traceback" not in out.stderr
    plan.write_text("model: lenet5\ndataset: synthetic\nluts: [{source: builtin:nope}]\n")
    out = cli("campaign", "run", plan)
    assert out.returncode == 2 and "unknown built-in" in out.stderr



def test_shards_split_the_approximate_runs(tmp_path, cli):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    runs = tmp_path / "runs"
    early = cli("campaign", "run", plan, "--runs-dir", runs, "--shard", "1/2", "--no-progress")
    assert early.returncode == 2 and "without --shard first" in early.stderr
    bad = cli("campaign", "run", plan, "--runs-dir", runs, "--shard", "3/2")
    assert bad.returncode == 2 and "1 <= K <= N" in bad.stderr
    refs = tmp_path / "refs.yaml"  # the same plan without approximate runs: exact + quantized 8u/8s
    refs.write_text(PLAN.replace("retrain: [none, ste]", "retrain: []"))
    assert "3/3 runs finished" in cli("campaign", "run", refs, "--runs-dir", runs, "--no-progress", check=0).stdout
    base = runs / "lenet5-synthetic"
    seen = []
    for k in (1, 2):
        out = cli("campaign", "run", plan, "--runs-dir", runs, "--shard", f"{k}/2", "--no-progress", check=0)
        assert f"(shard {k}/2): 2/2 runs finished" in out.stdout
        now = sorted(p.parent.name for p in base.glob("approximate-*/result.json"))
        seen.append([r for r in now if r not in sum(seen, [])])
    assert [len(s) for s in seen] == [2, 2]  # disjoint halves of the four approximate runs
    assert any(r.endswith("-noretrain") for r in seen[0]) and any(r.endswith("-ste") for r in seen[0])
    whole = cli("campaign", "run", plan, "--runs-dir", runs, "--no-progress", check=0)
    assert "7/7 runs finished" in whole.stdout


def test_table_figure(tmp_path, cli):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("retrain: [none, ste]", "retrain: [none]") + 'title: "LeNet-5, synthetic"\n')
    runs = tmp_path / "runs"
    cli("campaign", "run", plan, "--runs-dir", runs, "--no-progress", check=0)
    png = tmp_path / "fig" / "t.png"
    out = cli("campaign", "table", plan, "--runs-dir", runs, "--figure", png, check=0)
    assert f"wrote {png}" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
