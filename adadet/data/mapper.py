"""Detectron2's DatasetMapper with image-reading failures that name the file and the fix."""
from detectron2.data import DatasetMapper

from .validation import DatasetError

__all__ = ["CheckedDatasetMapper"]


class CheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same constructor and ``from_config``) that turns an image which
    cannot be read (missing, unreadable, not an image, truncated) into a
    :class:`DatasetError` naming the file, its dataset record and the fix, instead of
    PIL's or the file system's bare error from inside a data-loader worker."""

    def __call__(self, dataset_dict):
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
