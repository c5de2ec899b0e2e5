"""``run_tsne``: features of the same sampled images at every stage, embedded and compared.

Steps: find (or train) the stages' runs; sample train and test images once (seeded); load
each stage's checkpoint unchanged and extract the requested layers' features and the test
predictions in one pass; reduce by PCA; embed with openTSNE (``Align``: independent,
aligned to the exact map, or transformed into it); write the artefacts, figures, flip tables
and ``metadata.json`` into a directory named from the content (see
:mod:`axcnn.analysis.artifacts`). A finished analysis with the same content is not redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import ConfigError
from .artifacts import FORMAT, save_artifact, write_json
from .embedding import Align, TSNEParams, displacement, embed_stages, fit_pca, knn_preservation
from .features import LayerRef, extract, resolve_layer, safe_layer_name, sample_indices
from .flips import flip_kinds, flip_table, write_flip_csv, write_predictions_csv
from .stages import StageQuery, StageRun, find_stages, load_stage_model

log = logging.getLogger("axcnn.analysis")


@dataclass(frozen=True)
class TsneOptions:
    """What to embed and how (the stages themselves come from a :class:`StageQuery`)."""

    layers: tuple[str, ...] = ("penultimate",)
    components: tuple[int, ...] = (2,)
    align: Align = Align.ALIGNED
    params: TSNEParams = field(default_factory=TSNEParams)
    max_train: int = 2000
    max_test: int = 1000
    classes: tuple[int, ...] | None = None
    save_figures: bool = True
    save_artifacts: bool = True
    show_misclassified: bool = False
    batch_size: int = 256
    force: bool = False
    progress: bool = True
    dpi: int = 150

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("give at least one --layer")
        if not self.components or any(c not in (2, 3) for c in self.components):
            raise ConfigError(f"--components must be 2D, 3D or 2D+3D, got {self.components}")
        if self.max_test < 1:
            raise ConfigError("--max-test must be >= 1 (the test points carry predictions)")
        if self.max_train < 0:
            raise ConfigError("--max-train must be >= 0")


def parse_components(text: str) -> tuple[int, ...]:
    """``2D``, ``3D`` or ``2D+3D`` (also ``2``, ``3``, ``2,3``)."""
    parts = [p.strip().upper().rstrip("D") for p in text.replace(",", "+").split("+") if p.strip()]
    try:
        comps = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        comps = ()
    if not comps or any(c not in (2, 3) for c in comps):
        raise ConfigError(f"--components must be 2D, 3D or 2D+3D, got '{text}'")
    return comps


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content(query: StageQuery, opts: TsneOptions, stages: list[StageRun], layer: str, seed: int) -> dict:
    return {"model": query.model, "dataset": query.dataset, "layer": layer,
            "components": list(opts.components), "align": opts.align.value,
            "params": asdict(replace(opts.params, n_jobs=0)),
            "sampling": {"max_train": opts.max_train, "max_test": opts.max_test, "seed": seed,
                         "classes": list(opts.classes) if opts.classes else None},
            "stages": [{"tag": s.tag, "run": s.run_dir.name, "checkpoint_sha256": _file_sha(s.checkpoint)}
                       for s in stages]}


def analysis_dir(runs_dir: Path, query: StageQuery, layer: str, align: Align, content: dict) -> Path:
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]
    return runs_dir / f"{query.model}-{query.dataset}" / "tsne" / f"{safe_layer_name(layer)}-{align.value}-{digest}"


def _title(model: str, ref: LayerRef, tag: str, classes_sel) -> str:
    t = f"t-SNE of {model} | {ref.feature_space}"
    if ref.kind != "pixels":
        t += f" {ref.requested}" + (f" ({ref.path})" if ref.path != ref.requested else "")
    t += f" | {tag}"
    if classes_sel:
        t += f" | classes {','.join(map(str, classes_sel))}"
    return t


def run_tsne(query: StageQuery, opts: TsneOptions, env, data=None) -> list[dict]:
    """Run the analysis for every requested layer; returns one summary dict per layer."""
    from ..data import load_dataset

    stages = find_stages(query, env)
    device = env.device if env.device != "auto" else "cpu"
    if data is None:
        data = load_dataset(query.dataset, env.data_dir, download=env.download)
    seed = opts.params.seed
    if opts.classes:
        bad = [c for c in opts.classes if not 0 <= c < data.num_classes]
        if bad:
            raise ConfigError(f"--classes {bad} are not class ids of {query.dataset} (0..{data.num_classes - 1})")
    reference = "exact" if any(s.tag == "exact" for s in stages) else stages[0].tag

    # which analyses still need doing
    todo: dict[str, tuple[Path, dict]] = {}
    results: list[dict] = []
    for layer in opts.layers:
        content = _content(query, opts, stages, layer, seed)
        out_dir = analysis_dir(env.runs_dir, query, layer, opts.align, content)
        meta_path = out_dir / "metadata.json"
        if meta_path.is_file() and not opts.force:
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
            if meta.get("status") == "complete":
                log.info("%s: already computed, not redone (--force recomputes)", out_dir)
                results.append({"dir": str(out_dir), "cached": True, **meta.get("summary", {})})
                continue
        todo[layer] = (out_dir, content)
    if not todo:
        return results

    train_idx = sample_indices(data.train_labels, opts.max_train, seed, list(opts.classes or []))
    test_idx = sample_indices(data.test_labels, opts.max_test, seed + 1, list(opts.classes or []))
    if len(test_idx) < 2:
        raise ConfigError("fewer than 2 test images to analyse (check --classes / --max-test)")
    images = torch.cat([data.train_images[torch.as_tensor(train_idx)],
                        data.test_images[torch.as_tensor(test_idx)]])
    n_train = len(train_idx)
    y_train = data.train_labels[torch.as_tensor(train_idx)].cpu().numpy()
    y_test = data.test_labels[torch.as_tensor(test_idx)].cpu().numpy()
    t0 = time.perf_counter()

    # features of every stage, reference first; PCA in the reference basis as they arrive
    order = sorted(stages, key=lambda s: s.tag != reference)
    feats: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in todo}
    shifts: dict[str, dict[str, np.ndarray]] = {layer: {} for layer in todo}
    preds: dict[str, np.ndarray] = {}
    refs: dict[str, LayerRef] = {}
    ref_raw: dict[str, np.ndarray] = {}
    bases: dict[str, object] = {}
    pca_k = opts.params.pca_dims
    bar = tqdm(total=len(images) * len(order), desc="features", unit="img", leave=False,
               disable=not opts.progress)
    for st in order:
        bar.set_description(f"features {st.tag}")
        model = load_stage_model(st, data.num_classes, data.image_shape[0], device, env.backend)
        state_before = {k: v.clone() for k, v in model.state_dict().items()}
        layer_refs = [resolve_layer(model, layer) for layer in todo]
        for layer, ref in zip(todo, layer_refs):
            refs.setdefault(layer, ref)
        out, pred = extract(model, images, data.mean, data.std, layer_refs, opts.batch_size, bar)
        after = model.state_dict()
        if any(not torch.equal(state_before[k], after[k]) for k in state_before):
            raise RuntimeError(f"feature extraction changed the state of stage {st.tag}")
        del model, state_before, after
        preds[st.tag] = pred[n_train:]
        for layer, ref in zip(todo, layer_refs):
            X = out[ref.path]
            if not np.all(np.isfinite(X)):
                raise ConfigError(f"stage {st.tag} produced non-finite features at {ref.path}")
            if st.tag == reference:
                ref_raw[layer] = X
                if pca_k and X.shape[1] > pca_k and opts.align is not Align.INDEPENDENT:
                    bases[layer] = fit_pca(X, pca_k)
            base = ref_raw[layer]
            norm = float(np.linalg.norm(base[n_train:], axis=1).mean()) or 1.0
            shifts[layer][st.tag] = (np.linalg.norm(X[n_train:] - base[n_train:], axis=1) / norm
                                     ).astype(np.float32) if X.shape == base.shape else \
                np.full(len(test_idx), np.nan, np.float32)
            if layer in bases:
                X = bases[layer].apply(X)
            elif pca_k and X.shape[1] > pca_k:
                X = fit_pca(X, pca_k).apply(X)
            feats[layer][st.tag] = X
    bar.close()
    t_features = time.perf_counter() - t0

    pixels = data.test_images[torch.as_tensor(test_idx)].reshape(len(test_idx), -1).cpu().numpy()
    classes = list(data.classes)
    params = replace(opts.params, pca_dims=0)  # reduced above
    for layer, (out_dir, content) in todo.items():
        t1 = time.perf_counter()
        ref = refs[layer]
        fit_bar = tqdm(total=len(stages) * len(opts.components), desc=f"t-SNE {layer}", leave=False,
                       disable=not opts.progress)

        def step(msg, _bar=fit_bar):
            _bar.set_postfix_str(msg)
            _bar.update(1)

        emb = embed_stages(feats[layer], opts.components, params, opts.align, reference, on_step=step)
        fit_bar.close()
        t_tsne = time.perf_counter() - t1
        results.append(_write(out_dir, content, query, opts, stages, reference, ref, emb, preds,
                              shifts[layer], train_idx, test_idx, y_train, y_test, pixels, data, classes,
                              {"features_s": t_features, "tsne_s": t_tsne}))
    return results


def _write(out_dir, content, query, opts, stages, reference, ref, emb, preds, shifts, train_idx,
           test_idx, y_train, y_test, pixels, data, classes, timings) -> dict:
    from ..lut import save_lut

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metadata.json").unlink(missing_ok=True)
    n_train = len(train_idx)
    test_mask = np.concatenate([np.zeros(n_train, bool), np.ones(len(test_idx), bool)])
    y_all = np.concatenate([y_train, y_test]).astype(np.int64)
    arts: dict[str, dict] = {}
    stage_meta = []
    for st in stages:
        tag = st.tag
        pred = preds[tag]
        art = {"y_all": y_all, "test_mask": test_mask, "y_test_sub": y_test.astype(np.int64),
               "y_pred_sub": pred.astype(np.int64), "X_test_pixels": pixels.astype(np.uint8),
               "image_shape": np.array(data.image_shape, np.int64), "model_name": query.model,
               "feature_space": ref.feature_space, "feature_layer_path": ref.path,
               "feature_layer_requested": ref.requested, "output_tag": tag,
               "classes": classes, "title": _title(query.model, ref, tag, opts.classes),
               "stage": st.stage.value, "align": opts.align.value, "reference_tag": reference,
               "train_indices": train_idx, "test_indices": test_idx,
               "accuracy": np.float64(100.0 * (pred == y_test).mean()),
               "feature_shift": shifts[tag]}
        summary = {"accuracy": float(art["accuracy"])}
        for nc, e in emb.embeddings[tag].items():
            art[f"X_{nc}d"] = e.Y
            if e.kl_divergence is not None:
                art[f"kl_{nc}d"] = np.float64(e.kl_divergence)
            ref_Y = emb.embeddings[reference][nc].Y
            art[f"displacement_{nc}d"] = displacement(e.Y, ref_Y)
            summary[f"kl_{nc}d"] = e.kl_divergence
            summary[f"method_{nc}d"] = e.method
            if tag != reference:
                summary[f"median_displacement_{nc}d"] = float(np.median(art[f"displacement_{nc}d"]))
                summary[f"knn_preservation_{nc}d"] = knn_preservation(e.Y, ref_Y, 10)
        if tag != reference and np.isfinite(shifts[tag]).all():
            summary["mean_feature_shift"] = float(np.mean(shifts[tag]))
        if st.lut is not None:
            art["lut_name"] = st.lut.name
            art["lut_sha256"] = st.lut.sha256
            save_lut(st.lut, out_dir / "luts" / f"{tag}.npz")
        arts[tag] = art
        if opts.save_artifacts:
            save_artifact(out_dir / "artifacts" / f"{tag}.npz", **art)
        stage_meta.append({**st.describe(), "summary": summary,
                           "run_dir": str(st.run_dir.relative_to(st.run_dir.parents[1]))})

    # flips: the reference against every other stage, and quantized against each approximate one
    pairs = [(reference, s.tag) for s in stages if s.tag != reference]
    if reference != "quantized" and "quantized" in arts:
        pairs += [("quantized", s.tag) for s in stages if s.stage.value == "approximate"]
    flips = []
    for a, b in pairs:
        table = flip_table(y_test, preds[a], preds[b], classes, a, b)
        flips.append(table)
        write_flip_csv(table, out_dir / f"flips_{a}__{b}.csv")
    write_json(out_dir / "flips.json", {"pairs": flips})
    write_predictions_csv(out_dir / "predictions.csv", test_idx, y_test, preds)

    figures = []
    if opts.save_figures:
        from ..viz import tsne_plots as tp

        fig_dir = out_dir / "figures"
        for tag, art in arts.items():
            if "X_2d" in art:
                figures.append(tp.plot_stage_2d(art, fig_dir / f"{tag}_2d.png", dpi=opts.dpi))
            if "X_3d" in art:
                figures.append(tp.plot_stage_3d(art, fig_dir / f"{tag}_3d.png", dpi=opts.dpi))
            if opts.show_misclassified:
                p = tp.plot_misclassified(art, fig_dir / f"misclassified_{tag}.png", dpi=opts.dpi)
                if p:
                    figures.append(p)
        if 2 in opts.components and len(arts) > 1:
            figures.append(tp.plot_stages_grid(list(arts.values()), fig_dir / "stages_2d.png",
                                               shared_limits=opts.align is not Align.INDEPENDENT, dpi=opts.dpi))
        if 2 in opts.components:
            for a, b in pairs:
                kinds = flip_kinds(y_test, preds[a], preds[b])
                figures.append(tp.plot_flips(arts[a], arts[b], kinds, fig_dir / f"flips_{a}__{b}.png",
                                             draw_moves=opts.align is not Align.INDEPENDENT, dpi=opts.dpi))
    timings["write_s"] = time.perf_counter() - t0
    summary = {"layer": ref.requested, "layer_path": ref.path, "align": opts.align.value,
               "n_train": int(n_train), "n_test": int(len(test_idx)),
               "accuracy": {t: float(a["accuracy"]) for t, a in arts.items()},
               "flips": {f"{f['a']}->{f['b']}": f["counts"] for f in flips}}
    meta = {"format": FORMAT, "status": "complete", "axcnn_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "content": content,
            "model": query.model, "dataset": query.dataset, "reference": reference,
            "feature_space": ref.feature_space, "feature_layer_requested": ref.requested,
            "feature_layer_path": ref.path, "align": opts.align.value,
            "components": list(opts.components), "params": asdict(opts.params),
            "pca_dims": emb.pca_dims or None,
            "sampling": {"max_train": opts.max_train, "max_test": opts.max_test, "seed": opts.params.seed,
                         "classes": list(opts.classes) if opts.classes else None,
                         "n_train": int(n_train), "n_test": int(len(test_idx)),
                         "train_split": "unaugmented"},
            "stages": stage_meta, "timings_s": timings, "summary": summary,
            "figures": [str(p.relative_to(out_dir)) for p in figures],
            "artifacts": [f"artifacts/{t}.npz" for t in arts] if opts.save_artifacts else []}
    write_json(out_dir / "metadata.json", meta)
    log.info("t-SNE analysis written to %s", out_dir)
    return {"dir": str(out_dir), "cached": False, **summary}
