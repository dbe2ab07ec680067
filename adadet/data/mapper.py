"""Detectron2's DatasetMapper with image-reading failures that name the file and the fix."""
from detectron2.data import DatasetMapper
from detectron2.utils.file_io import PathManager
from PIL import Image

from .validation import DatasetError

__all__ = ["CheckedDatasetMapper"]

#: PIL modes of single-channel images of more than 8 bits (16-bit PNG / TIFF, 32-bit
#: integer or float). Detectron2's reader converts them to RGB by clipping every value
#: above 255, so a 16-bit image would train and evaluate as almost all white.
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _check_bit_depth(dataset_dict) -> None:
    """Refuse an image of more than 8 bits per channel; reads the header only."""
    path = dataset_dict.get("file_name")
    try:
        with PathManager.open(path, "rb") as f, Image.open(f) as image:
            mode = image.mode
    except OSError:
        return  # not readable at all: the mapper's own read reports it
    if mode in _HIGH_BIT_DEPTH_MODES:
        raise DatasetError(
            f"Image {path} (image_id {dataset_dict.get('image_id')}) has more than 8 bits per "
            f"channel (PIL mode {mode!r}, e.g. a 16-bit grayscale PNG): it would be read with "
            "every value above 255 clipped, i.e. almost all white. Fix: convert it to an 8-bit "
            "image (e.g. cv2.imwrite(path, (cv2.imread(path, cv2.IMREAD_UNCHANGED) // 256)"
            ".astype('uint8')), or rescaled to its own value range) and point the data set at it."
        )


class CheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same constructor and ``from_config``) that turns an image which
    cannot be read (missing, unreadable, not an image, truncated) into a
    :class:`DatasetError` naming the file, its dataset record and the fix, instead of
    PIL's or the file system's bare error from inside a data-loader worker. Images of
    more than 8 bits per channel (16-bit grayscale PNGs) are refused the same way: they
    would be read as all white."""

    def __call__(self, dataset_dict):
        _check_bit_depth(dataset_dict)
        try:
            return super().__call__(dataset_dict)  # it works on a deep copy of the record
        except OSError as e:  # FileNotFoundError, PIL.UnidentifiedImageError, truncation
            raise DatasetError(
                f"Image {dataset_dict.get('file_name')} (image_id "
                f"{dataset_dict.get('image_id')}) could not be read: "
                f"{type(e).__name__}: {e}. Fix: restore the file (download or extract it "
                "again), or remove this image and its annotations from the dataset's "
                "annotation file."
            ) from e
