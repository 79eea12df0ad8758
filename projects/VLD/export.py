"""Export a trained model to ONNX and check it with ONNX Runtime, in one command.

    python projects/VLD/export.py --config-file log/vld_vcm/config.yaml --output vld_vcm.onnx \\
        model.load_weights log/vld_vcm/checkpoint.pth

Writes the evaluation model (input ``tracklets`` float32 (batch, T, 3, H, W), normalised as the
test loader normalises; output ``features`` (batch, D); any batch size, T, H, W from the config),
runs it with ONNX Runtime on the CPU on a batch of test tracklets (from the configured data when
it is there, else a seeded random batch) against PyTorch, and keeps it only when the largest
relative difference is at most ``--tolerance`` (1e-4); ``<output>.json`` beside it describes it.
Weights: ``model.load_weights`` (a checkpoint of ours, or the authors' released one);
``--random-weights`` exports random weights (for testing). Flags may stand anywhere.
"""
import os
import sys

try:
    import torch
    import yaml

    from vld_plugin.config import load_config
    from vld_plugin.errors import ConfigError, DatasetNotFoundError, UsageError, VLDError, one_line
    from vld_plugin.launch import _Parser, build_datamanager, build_model, report_error
except ModuleNotFoundError as e:  # run from a checkout without installing it
    print(f"error: {e}; install the plugin and its dependencies first: pip install -e . (in the repository root)",
          file=sys.stderr)
    sys.exit(2)

VERIFY_PER_SPLIT = 3  # tracklets from the first target's query and gallery each
RANDOM_BATCH, RANDOM_SEED = 3, 0  # without data: a seeded random batch of normalised-looking values


def parse_args(argv=None):
    """Flags (in any position) and ``opts``, the ``KEY VALUE`` config overrides."""
    from vld_plugin.export import TOLERANCE

    parser = _Parser(description="Export a trained model to ONNX and verify it with ONNX Runtime. Overrides come "
                                 "as KEY VALUE pairs, e.g. model.load_weights log/vld/checkpoint.pth; flags may "
                                 "go anywhere.")
    parser.add_argument("--config-file", default="", help="YAML config of the run (e.g. <data.save_dir>/config.yaml)")
    parser.add_argument("--output", required=True, metavar="FILE.onnx", help="ONNX file to write")
    parser.add_argument("--random-weights", action="store_true",
                        help="export randomly initialised weights (for testing) instead of model.load_weights")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest relative difference ONNX Runtime vs PyTorch accepted (default {TOLERANCE:g})")
    parser.add_argument("--dynamo", action="store_true",
                        help="use torch's torch.export-based ONNX exporter (needs onnxscript; slower) instead of "
                             "the TorchScript-based one")
    args, opts = parser.parse_known_args(argv)
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise UsageError(f"unknown option {flags[0]}; the options are --config-file, --output, --random-weights, "
                         "--tolerance, --dynamo (overrides are KEY VALUE pairs without dashes)")
    if not args.output.lower().endswith(".onnx"):
        raise UsageError(f"--output {args.output} must end in .onnx (FeatureExtractor tells ONNX models by it)")
    if not args.tolerance >= 0:
        raise UsageError(f"--tolerance must be >= 0, got {args.tolerance}")
    args.opts = opts
    return args


def load_model(cfg, random_weights):
    """The eval model of ``cfg`` with the weights of ``model.load_weights`` (or random, seeded with
    ``train.seed``); returns (model, what the weights are)."""
    from vld_plugin.checkpoint import load_model_state, read_weights
    from vld_plugin.feature_extractor import num_classes_in

    if random_weights:
        torch.manual_seed(cfg.train.seed)
        # the eval forward reads no classifier: one identity is enough
        return build_model(cfg, 1).eval(), f"random (--random-weights, torch seed {cfg.train.seed})"
    path = cfg.model.load_weights
    state = read_weights(path)
    model = build_model(cfg, num_classes_in(state, path))
    load_model_state(model, state, path)
    return model.eval(), os.path.abspath(path)


def verification_batch(cfg):
    """Normalised test tracklets (B, T, 3, H, W) as the test loader gives them: the first
    ``VERIFY_PER_SPLIT`` query and gallery tracklets of the first target; without the data there,
    a seeded random batch. Returns (images, where they came from)."""
    try:
        datamanager = build_datamanager(cfg, generate=False, workers=0, batch_size_test=VERIFY_PER_SPLIT,
                                        verbose=False)
    except DatasetNotFoundError as e:
        print(f"no test data to verify on ({one_line(e)}); using a seeded random batch instead")
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        images = torch.randn(RANDOM_BATCH, cfg.video.seq_len, 3, cfg.data.height, cfg.data.width, generator=generator)
        return images, f"seeded random batch (torch seed {RANDOM_SEED}; no data under {cfg.data.root})"
    name = datamanager.targets[0]
    parts = {split: next(iter(datamanager.test_loader[name][split]))["img"] for split in ("query", "gallery")}
    images = datamanager.prepare_batch({"img": torch.cat(list(parts.values()))}, "cpu", train=False)["img"]
    counts = " and ".join(f"{len(v)} {k}" for k, v in parts.items())
    return images, f"{name} test set under {cfg.data.root}: the first {counts} tracklets"


def export(args):
    """Load the config and the model, export, verify, describe; returns the description."""
    from vld_plugin.data.frame_sampling import eval_sample_method
    from vld_plugin.export import EXTRA, check_writable, description_path, export_and_verify, require

    require()  # before any work: a missing extra is one line
    if args.dynamo:
        require("onnxscript")
    # every weight comes from model.load_weights (or is random): nothing pretrained is loaded or downloaded
    cfg = load_config(args.config_file, list(args.opts) + ["model.pretrained", "none"])
    if args.random_weights and cfg.model.load_weights:
        raise ConfigError("--random-weights exports random weights, but model.load_weights is set too; drop one")
    if not args.random_weights and not cfg.model.load_weights:
        raise ConfigError("export needs trained weights: set model.load_weights PATH (a checkpoint of ours or the "
                          "authors' released one), or pass --random-weights to export random weights for testing")
    method = eval_sample_method(cfg.video.sample_method, override=cfg.video.test_sample_method)
    if method == "all":
        raise ConfigError("the test sampling 'all' keeps every frame, but an ONNX model takes exactly video.seq_len "
                          "frames per tracklet; set video.test_sample_method to another method (e.g. evenly)")
    check_writable(args.output)
    model, weights = load_model(cfg, args.random_weights)
    images, data = verification_batch(cfg)
    info = {
        "model": cfg.model.name,
        "weights": weights,
        "config_file": os.path.abspath(args.config_file) if args.config_file else "",
        "overrides": list(args.opts),
        "preprocessing": {"frames": cfg.video.seq_len, "test_sample_method": method, "height": cfg.data.height,
                          "width": cfg.data.width, "resize": "PIL bilinear, antialiased"},
        "config": yaml.safe_load(cfg.dump()),
        "run_with": f"FeatureExtractor(config_file, '{args.output}') ({EXTRA})",
    }
    description = export_and_verify(model, args.output, images, cfg.data.norm_mean, cfg.data.norm_std,
                                    tolerance=args.tolerance, dynamo=args.dynamo, info=info, data=data,
                                    metadata={"model": cfg.model.name, "test_sample_method": method})
    inp, out = description["input"], description["output"]
    print(f"exported {cfg.model.name} (weights: {weights}) to {args.output}: {inp['name']} {inp['dtype']} "
          f"{tuple(inp['shape'])} normalised with mean {description['normalisation']['mean']} and std "
          f"{description['normalisation']['std']} -> {out['name']} {out['dtype']} {tuple(out['shape'])}, opset "
          f"{description['opset']}; described in {description_path(args.output)}")
    return description


def main(argv=None):
    """The command; returns the exit code (0; 2 for usage and configuration errors, a missing extra or
    missing weights; 1 for checkpoint, output and verification faults; 130 after Ctrl-C)."""
    try:
        export(parse_args(argv))
    except KeyboardInterrupt:
        report_error("stopped by Ctrl-C; no ONNX file was written")
        return 130
    except VLDError as e:
        report_error(one_line(e))
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
