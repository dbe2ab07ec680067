"""Helpers of the engine tests: a tiny COCO instances dataset written to disk (squares and
discs on plain backgrounds) and a small R-18 config for it (tiny_config.yaml).

Kept independent of adadet.data so the engine tests do not depend on the embedded
datasets. Every image is SIZE x SIZE and holds exactly two objects, so that batches split
across processes give the same per-image loss normalizers (see the DDP test).
"""
import json
import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_CLASSES = ("square", "disc")
SIZE = 64


def _polygon(class_id: int, cx: float, cy: float, r: float):
    if class_id == 0:
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    else:
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
    return [float(v) for p in pts for v in p]


def write_tiny_coco(root: str, split: str, count: int, seed: int = 0):
    """Write ``count`` images and a COCO json under ``root``; returns (json_file, image_root)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    image_root = os.path.join(root, split)
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image = np.full((SIZE, SIZE, 3), rng.integers(0, 80, size=3), dtype=np.uint8)
        # two objects, one in each half, so they never overlap
        for slot in range(2):
            class_id = int(rng.integers(0, 2))
            r = float(rng.uniform(8, 13))
            cx = float(rng.uniform(r + 1, SIZE / 2 - r - 1) + slot * SIZE / 2)
            cy = float(rng.uniform(r + 1, SIZE - r - 1))
            poly = _polygon(class_id, cx, cy, r)
            colour = [int(c) for c in rng.integers(150, 256, size=3)]
            cv2.fillPoly(image, [np.round(np.array(poly).reshape(-1, 2)).astype(np.int32)], colour)
            xs, ys = poly[0::2], poly[1::2]
            x0, y0 = min(xs), min(ys)
            w, h = max(xs) - x0, max(ys) - y0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": class_id + 1,
                    "bbox": [x0, y0, w, h],
                    "area": w * h,
                    "segmentation": [poly],
                    "iscrowd": 0,
                }
            )
        file_name = f"{split}_{index:03d}.png"
        cv2.imwrite(os.path.join(image_root, file_name), image)
        images.append({"id": index + 1, "file_name": file_name, "height": SIZE, "width": SIZE})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(TINY_CLASSES)]
    json_file = os.path.join(root, f"{split}.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_file, image_root


#: split -> number of images. "pair" is one batch of the tiny config: every iteration on it
#: sees the same two images (in some order), so runs can be compared step for step.
TINY_SPLITS = {"train": 6, "val": 3, "pair": 2}


def register_tiny(root: str) -> None:
    """Register adadet_test_tiny_{train,val,pair} written under ``root`` (if not yet)."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    for split in TINY_SPLITS:
        name = f"adadet_test_tiny_{split}"
        if name not in DatasetCatalog.list():
            register_coco_instances(
                name, {}, os.path.join(root, f"{split}.json"), os.path.join(root, split)
            )


def tiny_cfg(output_dir: str = ""):
    """A small Mask R-CNN R-18 ADN config for CPU tests (BN norms, 64 px inputs)."""
    from detectron2.config import get_cfg

    from adadet import add_adn_config

    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.merge_from_file(os.path.join(HERE, "tiny_config.yaml"))
    cfg.OUTPUT_DIR = output_dir
    return cfg


def read_metrics(output_dir: str):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


