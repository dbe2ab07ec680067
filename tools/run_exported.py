#!/usr/bin/env python
"""Run a detector exported by tools/export_model.py and print its detections.

    tools/run_exported.py output/export_TTTT/model.ts --input image.jpg [more.jpg ...]
    tools/run_exported.py output/export_TTTT/model.ts --input image.jpg --json detections.json
    tools/run_exported.py output/export_TTTT_onnx/model.onnx --input image.jpg   # onnxruntime

Standalone on purpose: torch and torchvision (whose nms and roi_align ops the graph
calls), or onnxruntime for .onnx files, plus numpy and Pillow; no adadet or detectron2 import, so the file can be copied next to the model onto a deployment machine.
Everything it needs to know (input format and test size, output names, class names, the
depth setting) is read from the metadata stored in the model file.

Steps: read the image (EXIF orientation applied), convert it to the model's input format,
resize as Detectron2's test loader does (shortest edge, bilinear), run, scale the boxes
back to the original image, paste each mask's probabilities into its box (bilinear, as
Detectron2's paste_masks_in_image) and threshold them at 0.5.

Exit status: 0 done; 2 a bad argument or input (a missing, empty or non-image --input, a
model file that is missing, a directory, empty or not an exported model), checked before
the model runs.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

METADATA_NAME = "adadet_export.json"  # adadet.deploy.export.METADATA_NAME


class TorchScriptModel:
    def __init__(self, path):
        import torchvision  # noqa: F401  (registers torchvision::nms and ::roi_align, used in the graph)

        extra = {METADATA_NAME: ""}
        self.module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        self.metadata = json.loads(extra[METADATA_NAME]) if extra[METADATA_NAME] else {}
        self.kind = "torchscript"

    def __call__(self, image):
        with torch.no_grad():
            return tuple(self.module(image))


class OnnxModel:
    def __init__(self, path):
        import onnxruntime  # only needed for .onnx files

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = json.loads(meta[METADATA_NAME]) if METADATA_NAME in meta else {}
        self.input_name = self.session.get_inputs()[0].name
        self.kind = "onnx"

    def __call__(self, image):
        outputs = self.session.run(None, {self.input_name: image.numpy()})
        return tuple(torch.from_numpy(o) for o in outputs)


def fail(message):
    """Stop with ``message`` and exit status 2 (as argparse does for a bad argument)."""
    print(f"run_exported.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_file(path, what, fix):
    """``path`` is a non-empty regular file; else stop naming ``what`` it should be."""
    if not os.path.exists(path):
        fail(f"{what} {path} does not exist: {fix}.")
    if os.path.isdir(path):
        fail(f"{what} {path} is a directory, not a file: {fix}.")
    if os.path.getsize(path) == 0:
        fail(f"{what} {path} is empty (0 bytes): {fix}.")


def check_inputs(paths):
    """Every --input is an image file Pillow can open (the header only; no decoding)."""
    for path in paths:
        check_file(path, "--input", "give image files (JPEG, PNG, ...)")
        try:
            with Image.open(path):
                pass
        except OSError as e:
            fail(f"--input {path} is not an image Pillow can read ({type(e).__name__}: {e}).")


def load_model(path):
    fix = "give the model.ts or model.onnx written by tools/export_model.py"
    check_file(path, "model", fix)
    try:
        model = OnnxModel(path) if path.endswith(".onnx") else TorchScriptModel(path)
    except ImportError:
        raise
    except Exception as e:  # torch.jit.load / onnxruntime: RuntimeError and the like
        kind = "an ONNX model" if path.endswith(".onnx") else "a TorchScript file"
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"model {path} is not {kind} ({first_line}): {fix}.")
    if not model.metadata:
        fail(f"model {path} has no {METADATA_NAME} metadata: export it with tools/export_model.py.")
    return model


def resized_size(height, width, min_size, max_size):
    """The output size of Detectron2's ResizeShortestEdge for one image."""
    scale = min_size / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def prepare_input(path, input_meta):
    """(original RGB array, model input tensor CHW float32 in the model's format)."""
    original = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    height, width = original.height, original.width
    new_h, new_w = resized_size(height, width, input_meta["min_size_test"], input_meta["max_size_test"])
    resized = np.asarray(original.resize((new_w, new_h), Image.BILINEAR))
    if input_meta.get("format", "BGR") == "BGR":
        resized = resized[:, :, ::-1]
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
    return np.asarray(original), tensor


def paste_mask(probabilities, box, height, width, threshold=0.5):
    """An MxM probability map resized into ``box`` (x0, y0, x1, y1, float pixels) of an
    image of height x width: bilinear sampling at pixel centres, then thresholded."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mask = np.zeros((height, width), dtype=bool)
    left, top = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    right, bottom = min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, height)
    if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
        return mask
    xs = (torch.arange(left, right, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    ys = (torch.arange(top, bottom, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    sampled = F.grid_sample(probabilities[None, None].float(), grid, align_corners=False)[0, 0]
    mask[top:bottom, left:right] = (sampled >= threshold).numpy()
    return mask


def detections(model, image_path, warmup=0):
    meta = model.metadata
    original, tensor = prepare_input(image_path, meta["input"])
    for _ in range(warmup):  # TorchScript optimises the graph during its first calls
        model(tensor)
    start = time.perf_counter()
    outputs = model(tensor)
    latency_ms = 1000 * (time.perf_counter() - start)
    named = dict(zip(meta["outputs"], outputs))
    result = {"image": image_path, "size": list(original.shape[:2]),
              "input_size": list(tensor.shape[-2:]), "latency_ms": latency_ms}
    if "boxes" not in named:  # a backbone-only export: report the feature maps
        result["features"] = {name: list(value.shape) for name, value in named.items()}
        return result
    scale_y = original.shape[0] / tensor.shape[1]
    scale_x = original.shape[1] / tensor.shape[2]
    boxes = named["boxes"].float() * torch.tensor([scale_x, scale_y, scale_x, scale_y])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, original.shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, original.shape[0])
    classes = meta.get("thing_classes") or []
    found = []
    for index in range(boxes.shape[0]):
        label = int(named["classes"][index])
        item = {"class_id": label, "class": classes[label] if label < len(classes) else str(label),
                "score": float(named["scores"][index]),
                "box": [round(float(v), 2) for v in boxes[index]]}
        if "masks" in named:
            mask = paste_mask(named["masks"][index, 0], boxes[index], *original.shape[:2])
            item["mask_pixels"] = int(mask.sum())
        found.append(item)
    result["detections"] = found
    return result


def print_result(result, threshold, limit):
    if "features" in result:
        print(f"{result['image']}: backbone features "
              + ", ".join(f"{k} {v}" for k, v in result["features"].items()))
        return
    shown = [d for d in result["detections"] if d["score"] >= threshold]
    print(f"{result['image']}: {result['size'][0]}x{result['size'][1]} "
          f"(model input {result['input_size'][0]}x{result['input_size'][1]}), "
          f"{len(shown)} detections with score >= {threshold:g} "
          f"({len(result['detections'])} in all) in {result['latency_ms']:.1f} ms")
    if not shown:
        return
    has_masks = "mask_pixels" in shown[0]
    print(f"  {'#':>3}  {'class':<18} {'score':>6}  {'box (x0, y0, x1, y1)':<34}"
          + (" mask px" if has_masks else ""))
    for index, d in enumerate(shown[:limit]):
        box = ", ".join(f"{v:7.1f}" for v in d["box"])
        print(f"  {index:>3}  {d['class'][:18]:<18} {d['score']:6.3f}  [{box}]"
              + (f" {d['mask_pixels']:7d}" if has_masks else ""))
    if len(shown) > limit:
        print(f"  ... {len(shown) - limit} more (--max-print)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__[__doc__.index("Exit status:"):],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model.ts (TorchScript) or model.onnx")
    parser.add_argument("--input", nargs="+", required=True, help="image files")
    parser.add_argument("--confidence-threshold", type=float, default=0.0,
                        help="print detections scoring at least this (the model's own "
                             "threshold was fixed at export)")
    parser.add_argument("--max-print", type=int, default=20, help="detections printed per image")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed runs on the first image before timing (TorchScript's "
                             "first calls include graph optimisation)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write all detections here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    check_inputs(args.input)
    model = load_model(args.model)
    meta = model.metadata
    print(f"{args.model}: {model.kind}, depth {meta.get('depth')}, {meta.get('meta_architecture')}, "
          f"input {meta['input']['format']} shortest edge {meta['input']['min_size_test']} "
          f"(max {meta['input']['max_size_test']}), outputs {', '.join(meta['outputs'])}")
    results = []
    for index, path in enumerate(args.input):
        result = detections(model, path, warmup=args.warmup if index == 0 else 0)
        print_result(result, args.confidence_threshold, args.max_print)
        results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "depth": meta.get("depth"), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
