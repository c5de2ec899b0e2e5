"""``axcnn tsne``: t-SNE of the same sampled images' features at every stage of a model.

Stages: exact, quantized and one approximate stage per LUT (all approximate runs at --bits
when no --lut is given). Checkpoints are loaded as saved (no calibration). A missing run is
named with the command that makes it, or trained first with --train-if-missing.

Alignment: 'aligned' (default) starts every stage's map from the exact map, so positions can
be compared across stages; 'independent' fits each stage on its own (the seed's behaviour);
'transform' places each stage's features into the frozen exact map.

Output: <runs-dir>/<model>-<dataset>/tsne/<layer>-<align>-<hash>/ with metadata.json,
artifacts/<stage>.npz, figures/*.png, flips.json, flips_<a>__<b>.csv and predictions.csv.
Browse it with `axcnn serve --runs-dir <runs-dir>`.

Seed aliases: --model_name, --bit_width, --tsne_stages, --tsne_multiplier_path,
--tsne_feature_space, --tsne_feature_layer, --tsne_components, --tsne_perplexity,
--tsne_max_iter (total iterations, exaggeration included), --tsne_max_train, --tsne_max_test,
--tsne_seed, --tsne_classes, --show_misclassified, --tsne-no-save-static,
--tsne-no-save-dash-artifact.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("axcnn")


def add_parser(sub) -> None:
    p = sub.add_parser("tsne", help="t-SNE of features across exact, quantized and approximate stages",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("stages")
    g.add_argument("--model", "--model_name", dest="model", default="lenet5")
    g.add_argument("--dataset", default=None, help="dataset (default: the model's)")
    g.add_argument("--bits", "--bit_width", dest="bits", type=int, default=8)
    g.add_argument("--signed", action="store_true")
    g.add_argument("--per-channel", action="store_true")
    g.add_argument("--stages", "--tsne_stages", dest="stages", nargs="+",
                   default=["exact", "quantized", "approximate"],
                   choices=["exact", "quantized", "approximate"])
    g.add_argument("--lut", "--tsne_multiplier_path", dest="lut", nargs="+", action="extend", default=[],
                   metavar="LUT", help="LUT file or builtin:NAME; one approximate stage each "
                                       "(default: every approximate run found)")
    g.add_argument("--retrain", choices=["none", "ste", "error-aware"], default=None,
                   help="which approximate run of each LUT (default: any)")
    g.add_argument("--runs-dir", type=Path, default=Path("runs"))
    g.add_argument("--train-if-missing", action="store_true",
                   help="train missing stages first (exact -> quantized -> approximate)")
    g.add_argument("--train-epochs", type=int, default=None, help="epochs for stages trained here")
    g.add_argument("--train-subset", type=int, default=None, help="training images for stages trained here")
    g.add_argument("--seed", "--tsne_seed", dest="seed", type=int, default=42,
                   help="sampling and t-SNE seed (default 42)")

    f = p.add_argument_group("features")
    f.add_argument("--layer", "--tsne_feature_layer", dest="layer", nargs="+", action="extend", default=[],
                   help="penultimate (default), logits, conv1, conv2, block1, block2, pixels or a module path")
    f.add_argument("--feature-space", "--tsne_feature_space", dest="feature_space",
                   choices=["layer", "pixels"], default="layer")
    f.add_argument("--max-train", "--tsne_max_train", dest="max_train", type=int, default=2000,
                   help="unaugmented train images (grey points; 0 for none; default 2000)")
    f.add_argument("--max-test", "--tsne_max_test", dest="max_test", type=int, default=1000)
    f.add_argument("--classes", "--tsne_classes", dest="classes", type=int, nargs="+", default=None)
    f.add_argument("--batch-size", type=int, default=256)

    t = p.add_argument_group("t-SNE")
    t.add_argument("--components", "--tsne_components", dest="components", default="2D",
                   help="2D, 3D or 2D+3D (default 2D)")
    t.add_argument("--align", choices=["aligned", "independent", "transform"], default="aligned")
    t.add_argument("--perplexity", "--tsne_perplexity", dest="perplexity", type=float, default=30.0)
    t.add_argument("--n-iter", type=int, default=500, help="iterations after early exaggeration (default 500)")
    t.add_argument("--tsne_max_iter", dest="max_iter", type=int, default=None,
                   help="seed alias: total iterations including the early-exaggeration ones")
    t.add_argument("--early-iter", type=int, default=250, help="early-exaggeration iterations (default 250)")
    t.add_argument("--pca", type=int, default=50, help="reduce features to N dims first (0: off; default 50)")
    t.add_argument("--jobs", type=int, default=0, help="threads (default: all cores)")

    o = p.add_argument_group("output")
    o.add_argument("--show-misclassified", "--show_misclassified", dest="show_misclassified", action="store_true",
                   help="also draw a grid of misclassified images per stage")
    o.add_argument("--no-figures", "--tsne-no-save-static", dest="no_figures", action="store_true")
    o.add_argument("--no-artifacts", "--tsne-no-save-dash-artifact", dest="no_artifacts", action="store_true")
    o.add_argument("--dpi", type=int, default=150)
    o.add_argument("--force", action="store_true", help="recompute an analysis that exists")
    o.add_argument("--no-progress", action="store_true")

    e = p.add_argument_group("environment")
    e.add_argument("--data-dir", type=Path, default=None)
    e.add_argument("--download", action="store_true")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    e.add_argument("--backend", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.embedding import Align, TSNEParams
    from ..analysis.stages import StageQuery
    from ..analysis.tsne import TsneOptions, parse_components, run_tsne
    from ..config import Retrain
    from ..errors import ConfigError
    from ..models import model_info, resolve_model_name
    from ..ops import Backend
    from ..train import RunEnv
    from ..train.pipeline import resolve_device

    model = resolve_model_name(args.model)
    dataset = args.dataset or model_info(model).default_dataset
    layers = list(args.layer)
    if args.feature_space == "pixels":
        if layers and layers != ["pixels"]:
            raise ConfigError("--feature-space pixels takes no --layer")
        layers = ["pixels"]
    layers = layers or ["penultimate"]
    n_iter = args.n_iter
    if args.max_iter is not None:
        n_iter = args.max_iter - args.early_iter
        if n_iter < 1:
            raise ConfigError(f"--tsne_max_iter {args.max_iter} must exceed the {args.early_iter} "
                              "early-exaggeration iterations")
    if args.lut and "approximate" not in args.stages:
        raise ConfigError("--lut selects approximate stages; add 'approximate' to --stages")
    query = StageQuery(model=model, dataset=dataset, stages=tuple(dict.fromkeys(args.stages)),
                       bits=args.bits, signed=args.signed, per_channel=args.per_channel,
                       luts=tuple(args.lut), retrain=Retrain.parse(args.retrain) if args.retrain else None,
                       seed=None, train_if_missing=args.train_if_missing, train_epochs=args.train_epochs,
                       train_subset=args.train_subset)
    params = TSNEParams(perplexity=args.perplexity, n_iter=n_iter, early_exaggeration_iter=args.early_iter,
                        seed=args.seed, n_jobs=args.jobs, pca_dims=args.pca)
    opts = TsneOptions(layers=tuple(dict.fromkeys(layers)), components=parse_components(args.components),
                       align=Align.parse(args.align), params=params, max_train=args.max_train,
                       max_test=args.max_test, classes=tuple(args.classes) if args.classes else None,
                       save_figures=not args.no_figures, save_artifacts=not args.no_artifacts,
                       show_misclassified=args.show_misclassified, batch_size=args.batch_size,
                       force=args.force, progress=not args.no_progress, dpi=args.dpi)
    env = RunEnv(runs_dir=args.runs_dir, data_dir=args.data_dir, device=resolve_device(args.device),
                 backend=Backend.parse(args.backend), progress=not args.no_progress, download=args.download)
    results = run_tsne(query, opts, env)
    for r in results:
        print(f"t-SNE {r.get('layer', '')} ({r.get('align', '')}): {r['dir']}" + ("  [cached]" if r.get("cached") else ""))
        for tag, acc in (r.get("accuracy") or {}).items():
            print(f"  {tag:<40} accuracy {acc:6.2f}%")
        for pair, counts in (r.get("flips") or {}).items():
            print(f"  {pair:<40} right->wrong {counts['right_to_wrong']:4d}  wrong->right {counts['wrong_to_right']:4d}")
    return 0
