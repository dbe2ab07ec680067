"""Hard-link installed distributions, with everything they require, into another environment.

    SOURCE_ENV/bin/python .ci/link_distributions.py DEST_SITE_PACKAGES torch torchvision

CI's second environment needs the same pinned torch as .venv. Installed afresh, the CUDA
build is a second 5.6 GB on disk, more than a CI machine had free (the CI run of e0628a5
stopped with "No space left on device"); hard links to .venv's files cost no space. Every
file a distribution's RECORD lists is linked, its .dist-info included, so pip in the
destination sees the distribution installed. Exit status 1 when a link cannot be made,
e.g. across file systems; the caller then removes the environment and installs instead.
"""
import importlib.metadata as metadata
import os
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(names):
    """The installed distributions `names` need at run time (no extras), by canonical name."""
    todo, found = [canonicalize_name(n) for n in names], {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not installed
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def link(dist, dest):
    """Hard-link every file of `dist` under `dest`; returns how many were linked."""
    count = 0
    for path in dist.files or []:
        source = os.path.realpath(dist.locate_file(path))
        if not os.path.isfile(source) or ".." in path.parts:
            continue  # console scripts (bin/) and files outside site-packages stay out
        target = os.path.join(dest, *path.parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.link(source, target)
            count += 1
    return count


def main(dest, names):
    present = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions(path=[dest])}
    dists = {name: dist for name, dist in closure(names).items() if name not in present}
    missing = sorted(set(map(canonicalize_name, names)) - set(dists) - present)
    if missing:
        print(f"[ci] not installed in {sys.prefix}: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        files = sum(link(dist, dest) for dist in dists.values())
    except OSError as error:
        print(f"[ci] cannot hard-link into {dest}: {error}", file=sys.stderr)
        return 1
    print(f"[ci] linked {len(dists)} distributions ({files} files) from {sys.prefix}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
