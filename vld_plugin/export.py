"""A model's evaluation forward as an ONNX file, checked against PyTorch with ONNX Runtime.

    from vld_plugin.export import export_and_verify
    description = export_and_verify(model, "vld.onnx", images, mean, std)   # images: (B, T, 3, H, W)

The file holds exactly the eval forward of the model contract (``models/frame_wise.py``):
input ``tracklets`` float32 (batch, T, 3, H, W), frames already normalised as the test loader
normalises them (``data.transforms.normalize``: ``(pixel / 255 - mean) / std`` per RGB channel),
output ``features`` float32 (batch, D), the test feature. The batch size is free; T, H and W are
those of the export. :func:`export_and_verify` writes the file only after ONNX Runtime (CPU)
gave the PyTorch features on a batch of another size than the one traced, and writes a JSON
description beside it (``<name>.json``). :class:`OnnxModel` runs such a file like the torch
model in eval mode (``FeatureExtractor`` uses it for ``.onnx`` models).

The exporter is torch's TorchScript-based one by default (``dynamo=False``: seconds, and it needs
no onnxscript); ``dynamo=True`` uses ``torch.export`` (about 10x slower on CPU, needs onnxscript).
Both give the same graph semantics for VLD, clip_tap and the frame-wise torchreid models.
Needs the ``export`` extra: ``pip install -e ".[export]"`` (onnx, onnxruntime, onnxscript).
"""
import json
import os
import tempfile
import warnings

import torch

from .errors import CheckpointError, ExportError, FeatureInputError, MissingDependencyError, OutputError

INPUT_NAME, OUTPUT_NAME = "tracklets", "features"
OPSET = 18
TOLERANCE = 1e-4  # largest relative difference ONNX Runtime vs PyTorch accepted (see difference())
EXTRA = 'pip install -e ".[export]"'
RELATIVE_TO = "per tracklet: max |onnx - torch| over its feature / max |torch| over its feature; the largest"


def require(*modules):
    """Import and return ``modules`` (default onnx and onnxruntime); one-line MissingDependencyError
    naming the extra to install when one is missing."""
    import importlib

    modules = modules or ("onnx", "onnxruntime")
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as e:
            raise MissingDependencyError(
                f"ONNX export and ONNX models need {name}, which cannot be imported ({e}); install the export "
                f"extra: {EXTRA} (in the repository root)") from None
    return loaded[0] if len(loaded) == 1 else tuple(loaded)


def input_description(mean, std):
    """The input's description, as written into the file and the JSON."""
    return (f"float32 (batch, T, 3, H, W): the T frames of each tracklet, RGB, channel-first, normalised "
            f"as the test loader does: (pixel / 255 - mean) / std per channel with mean "
            f"{[float(m) for m in mean]} and std {[float(s) for s in std]} (pixels 0-255 after resizing to "
            f"H x W, bilinear, antialiased)")


def output_description(dim):
    return f"float32 (batch, {dim}): the test feature of each tracklet (the model in eval mode)"


def export_onnx(model, path, seq_len, height, width, mean, std, opset=OPSET, dynamo=False, sample_batch=2,
                metadata=None):
    """Write the eval forward of ``model`` to ``path`` (ONNX, opset ``opset``): input ``tracklets``
    (batch, ``seq_len``, 3, ``height``, ``width``), output ``features`` (batch, D), batch dynamic.

    ``mean`` / ``std``: the normalisation the input must have had (written into the input's
    description and the metadata, with ``metadata``, a dict of strings). The model is traced in
    eval mode on a seeded random batch of ``sample_batch`` (>= 2) tracklets; its mode is restored
    afterwards. Returns D.
    """
    onnx = require("onnx")
    device = next(iter(model.parameters()), torch.empty(0)).device
    sample = torch.randn(sample_batch, seq_len, 3, height, width, generator=torch.Generator().manual_seed(0))
    sample = sample.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dim = int(model(sample).shape[1])
        # traced with autograd on: under no_grad nn.MultiheadAttention takes its fused fast path
        # (aten::_native_multi_head_attention), which has no ONNX form; with autograd on it runs the same
        # attention as separate operators. verify() compares with the fast path, as evaluation runs it.
        with warnings.catch_warnings():
            # shape checks of the forward (T == seq_len) are constants of the trace: T is fixed by design
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # the TorchScript-based exporter is deprecated but works and is ~10x faster here (dynamo=True is
            # the way forward; --dynamo); its deprecation notices are not the user's to act on
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                    DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            if dynamo:
                require("onnxscript")
                torch.onnx.export(model, (sample,), path, dynamo=True, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], opset_version=opset, external_data=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
            else:
                torch.onnx.export(model, (sample,), path, dynamo=False, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], opset_version=opset,
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        model.train(was_training)

    proto = onnx.load(path)
    graph = proto.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    inp, out = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
    inp.doc_string = input_description(mean, std)
    out.doc_string = output_description(dim)
    inp.type.tensor_type.shape.dim[0].dim_param = "batch"
    out_dims = out.type.tensor_type.shape.dim
    out_dims[0].dim_param = "batch"
    out_dims[1].dim_value = dim  # the TorchScript exporter leaves a symbolic name for D
    proto.doc_string = f"vld_plugin export: {INPUT_NAME} -> {OUTPUT_NAME}; {inp.doc_string}"
    meta = {"norm_mean": json.dumps([float(m) for m in mean]), "norm_std": json.dumps([float(s) for s in std]),
            "seq_len": str(seq_len), "height": str(height), "width": str(width), "feature_dim": str(dim),
            **{k: str(v) for k, v in (metadata or {}).items()}}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    try:
        onnx.save(proto, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return dim


class OnnxModel:
    """An exported model run by ONNX Runtime, called like the torch model in eval mode:
    ``model(images)`` maps float normalised (B, T, 3, H, W) to the (B, D) features (float32, CPU).

    ``device``: 'cpu', or 'cuda' / 'cuda:N' (needs onnxruntime's CUDA provider). ``seq_len``,
    ``height``, ``width``, ``feature_dim`` and ``metadata`` (what the export wrote) come from the file.
    """

    def __init__(self, path, device="cpu"):
        ort = require("onnxruntime")
        if not os.path.isfile(path):
            what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
            raise CheckpointError(f"ONNX model {path} {what}")
        device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise FeatureInputError(f"device '{device}' was asked for but onnxruntime has no CUDA provider "
                                  "(install onnxruntime-gpu); use device='cpu'")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads as torch would use
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"cannot load ONNX model {path}: {first}") from None
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 5 or len(outputs[0].shape) != 2:
            raise ExportError(f"ONNX model {path} does not take (B, T, 3, H, W) tracklets to (B, D) features "
                              f"(inputs {[i.shape for i in inputs]}, outputs {[o.shape for o in outputs]}); "
                              "export it with projects/VLD/export.py")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        _, t, _, h, w = inputs[0].shape
        fixed = [d if isinstance(d, int) else None for d in (t, h, w)]
        self.seq_len, self.height, self.width = fixed
        self.feature_dim = outputs[0].shape[1] if isinstance(outputs[0].shape[1], int) else None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.providers = self.session.get_providers()

    def __repr__(self):
        return (f"OnnxModel({self.path}, (B, {self.seq_len}, 3, {self.height}, {self.width}) -> "
                f"(B, {self.feature_dim}), {self.providers[0]})")

    def normalisation(self):
        """(mean, std) the export wrote into the file, or None for a file from elsewhere."""
        try:
            return json.loads(self.metadata["norm_mean"]), json.loads(self.metadata["norm_std"])
        except (KeyError, ValueError):
            return None

    def __call__(self, images):
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: x})[0])


def difference(reference, result):
    """(largest absolute, largest relative) difference of ``result`` from ``reference`` (B, D): relative
    per tracklet to the largest absolute value of its reference feature (see ``RELATIVE_TO``)."""
    ref, res = reference.detach().cpu().double(), result.detach().cpu().double()
    diff = (res - ref).abs()
    scale = ref.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    return float(diff.max()), float((diff.amax(dim=1) / scale).max())


def verify(model, path, images):
    """Run ``images`` (B, T, 3, H, W, float normalised) through ``model`` (eval mode) and through
    the ONNX file ``path`` with ONNX Runtime on the CPU; returns the two feature tensors and the
    differences (a dict)."""
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            expected = model(images.to(device)).float().cpu()
    finally:
        model.train(was_training)
    got = OnnxModel(path)(images)
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(f"the exported model gives features of shape {tuple(got.shape)}, PyTorch "
                          f"{tuple(expected.shape)}")
    max_abs, max_rel = difference(expected, got)
    return expected, got, {"batch": len(images), "max_abs_diff": max_abs, "max_rel_diff": max_rel}


def check_writable(path):
    """OutputError (one line) unless a file can be created at ``path`` (its folder is made if missing)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a folder; give a file name ending in .onnx")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"ok")
    except OSError as e:
        raise OutputError(f"cannot write into {folder}: {e.strerror or e}; choose another --output") from None


def description_path(path):
    """The JSON description beside the ONNX file ``path``: ``<path without .onnx>.json``."""
    root, ext = os.path.splitext(path)
    return (root if ext.lower() == ".onnx" else path) + ".json"


def export_and_verify(model, path, images, mean, std, tolerance=TOLERANCE, opset=OPSET, dynamo=False,
                      info=None, data="", metadata=None, log=print):
    """Export ``model`` to ``path``, check the file with ONNX Runtime, and describe it in JSON.

    ``images``: (B, T, 3, H, W) float tracklets normalised with ``mean`` / ``std`` (as the test
    loader gives them); T, H, W are those of the export, and the export traces another batch size
    than B, so the check covers the dynamic batch. ``data`` says where ``images`` came from;
    ``info``: more JSON entries (the config, the weights); ``metadata``: more entries of the file's
    metadata (strings, see :func:`export_onnx`). The ONNX file is written next to
    ``path`` under a temporary name and put in place only when the largest relative difference
    (:func:`difference`) is at most ``tolerance``; otherwise ExportError (one line, the numbers)
    and nothing is written. Returns the description (also written to :func:`description_path`).
    """
    onnx, ort = require()
    if images.dim() != 5 or images.shape[2] != 3 or len(images) < 1:
        raise ExportError(f"expected verification images (B, T, 3, H, W), got {tuple(images.shape)}")
    batch, seq_len, _, height, width = images.shape
    sample_batch = 3 if batch == 2 else 2
    check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-export-", suffix=".onnx", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        dim = export_onnx(model, tmp, seq_len, height, width, mean, std, opset=opset, dynamo=dynamo,
                          sample_batch=sample_batch, metadata=metadata)
        _, _, measured = verify(model, tmp, images)
        log(f"ONNX Runtime vs PyTorch on {batch} tracklets ({data or 'given images'}): max abs difference "
            f"{measured['max_abs_diff']:.3g}, max relative difference {measured['max_rel_diff']:.3g} "
            f"(tolerance {tolerance:g})")
        if not measured["max_rel_diff"] <= tolerance:  # NaN fails too
            raise ExportError(
                f"the exported model's features differ from PyTorch's by {measured['max_rel_diff']:.3g} relative "
                f"(max abs {measured['max_abs_diff']:.3g}) on {batch} tracklets, above the tolerance {tolerance:g}; "
                f"{path} was not written")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; an ordinary file's permissions
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    description = {
        "onnx": os.path.basename(path),
        "exporter": "torch.onnx.export(dynamo=True)" if dynamo else "torch.onnx.export(dynamo=False), TorchScript",
        "opset": opset,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "input": {"name": INPUT_NAME, "shape": ["batch", seq_len, 3, height, width], "dtype": "float32",
                  "description": input_description(mean, std)},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", dim], "dtype": "float32",
                   "description": output_description(dim)},
        "normalisation": {"mean": [float(m) for m in mean], "std": [float(s) for s in std],
                          "formula": "(pixel / 255 - mean) / std per RGB channel"},
        "verification": {**measured, "tolerance": tolerance, "relative_to": RELATIVE_TO, "data": data,
                         "traced_batch": sample_batch, "runtime": "onnxruntime CPUExecutionProvider"},
        **(info or {}),
    }
    json_path = description_path(path)
    try:
        with open(json_path, "w") as f:
            json.dump(description, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise OutputError(f"cannot write {json_path}: {e.strerror or e}") from None
    return description
