#!/usr/bin/env python
"""Make detectron2 importable in the running Python environment, for adadet.

1. A detectron2 with its compiled ops (a source build) is already importable: use it
   untouched and exit.
2. adadet's compatibility install is already there: nothing to do.
3. Otherwise: detectron2 is not on the package index, and its only copy there, the
   re-upload ``pb1-detectron2==0.6``, ships v0.6's Python sources without the C++ sources
   its own build needs. So fetch that sdist, install its Python package as distribution
   ``detectron2`` 0.6 without building anything, and place adadet's stand-in
   (``adadet/compat/detectron2_c.py``) as ``detectron2/_C.py``.

Run it with the interpreter of the target environment (torch must be installed there:
the sdist's setup.py imports torch even to read its metadata).
"""
import argparse
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_REQUIREMENT = "pb1-detectron2==0.6"
REPO_ROOT = Path(__file__).resolve().parents[1]
STANDIN = REPO_ROOT / "adadet" / "compat" / "detectron2_c.py"
# v0.6's setup.py installs these three projects inside the detectron2 package.
PROJECTS = {
    "point_rend": "projects/PointRend/point_rend",
    "deeplab": "projects/DeepLab/deeplab",
    "panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}
PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "0.6"
description = "detectron2 v0.6 Python sources (from pb1-detectron2) without compiled ops; detectron2._C is adadet's stand-in"
license = {text = "Apache-2.0"}

[tool.setuptools.packages.find]
include = ["detectron2*"]

[tool.setuptools.package-data]
"detectron2.model_zoo" = ["configs/**/*.yaml", "configs/**/*.py"]
"""


def installed_detectron2_state() -> str:
    """'absent', 'compiled' (a real build) or 'compat' (adadet's stand-in)."""
    if importlib.util.find_spec("detectron2") is None:
        return "absent"
    spec = importlib.util.find_spec("detectron2._C")
    if spec is None:
        return "absent"  # a detectron2 without any _C cannot import its layers
    return "compat" if spec.origin.endswith(".py") else "compiled"


def pip(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", *args])


def install_from_sdist(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache_dir.glob("pb1-detectron2-0.6.tar.gz"))
    if not sdists:
        print(f"[adadet] downloading {SDIST_REQUIREMENT} (sources only, nothing is built)")
        pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
            "-d", str(cache_dir), SDIST_REQUIREMENT)
        sdists = sorted(cache_dir.glob("pb1-detectron2-0.6.tar.gz"))
    if not sdists:
        sys.exit(f"[adadet] could not download {SDIST_REQUIREMENT} into {cache_dir}")
    with tempfile.TemporaryDirectory(prefix="adadet-d2-") as tmp:
        tmp = Path(tmp)
        with tarfile.open(sdists[0]) as archive:
            archive.extractall(tmp, filter="data")
        source = next(tmp.glob("pb1-detectron2-*"))
        project = tmp / "detectron2-compat"
        shutil.copytree(source / "detectron2", project / "detectron2", symlinks=False)
        for name, path in PROJECTS.items():
            shutil.copytree(source / path, project / "detectron2" / "projects" / name)
        shutil.copyfile(STANDIN, project / "detectron2" / "_C.py")
        (project / "pyproject.toml").write_text(PYPROJECT)
        print("[adadet] installing detectron2 0.6 (Python sources, compatibility mode)")
        pip("install", "--no-deps", "--no-build-isolation", str(project))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".venv" / "cache",
                        help="where the downloaded sdist is kept")
    args = parser.parse_args()
    state = installed_detectron2_state()
    if state == "compiled":
        print("[adadet] using the detectron2 already installed (with compiled ops), untouched")
    elif state == "compat":
        print("[adadet] detectron2 0.6 (compatibility mode) already installed")
    else:
        install_from_sdist(args.cache_dir)


if __name__ == "__main__":
    main()
