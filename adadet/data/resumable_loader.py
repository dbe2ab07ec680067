"""A training loader whose batch ``k`` depends only on (seed, k): resumable exactly
(``DATALOADER.EXACT_RESUME True``; why: docs/training.md, "Exact resume"). How:

* the images of global batch ``k`` are computed from ``(SEED, k)`` alone: each epoch is a
  seeded permutation, split by aspect ratio (landscape / portrait, as Detectron2 groups
  them), cut into batches of ``SOLVER.IMS_PER_BATCH`` within each group (the group's last
  incomplete batch is dropped for that epoch) and the batches shuffled; rank ``r`` of ``W``
  takes the ``r``-th slice of every global batch;
* the random augmentations of image ``j`` of batch ``k`` (flips, scales: NumPy's global
  generator) are seeded by ``(SEED, k, j)``, so they do not depend on what ran before;
* the trainer starts the loader at the resumed iteration and seeds torch's generator per
  iteration (proposal sampling), see ``ADNTrainer``.

Data-loader workers each take every ``num_workers``-th batch; PyTorch returns them in order.
"""
import bisect
import itertools
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
import torch.utils.data as torchdata

__all__ = ["ResumableBatches", "ResumableTrainLoader", "seed_iteration"]


def _as_is(batch):
    return batch


def _seed(*numbers: int) -> int:
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1)[0])


class ResumableBatches:
    """The global batches of indices: ``batch(k)`` is a pure function of (seed, k)."""

    def __init__(self, aspect_groups: Sequence[int], batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError(f"SOLVER.IMS_PER_BATCH must be >= 1, got {batch_size}.")
        self.groups = np.asarray(aspect_groups)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        usable = sum(int(np.sum(self.groups == g)) // self.batch_size for g in set(aspect_groups))
        if usable == 0:
            raise ValueError(
                f"No aspect-ratio group of the training set has SOLVER.IMS_PER_BATCH = "
                f"{batch_size} images ({len(aspect_groups)} images in all): lower "
                "SOLVER.IMS_PER_BATCH or turn DATALOADER.EXACT_RESUME off."
            )
        self._epochs: List[List[List[int]]] = []
        self._starts: List[int] = [0]  # first global batch index of each epoch

    def _epoch(self, epoch: int) -> List[List[int]]:
        rng = np.random.default_rng(_seed(self.seed, epoch))
        order = rng.permutation(len(self.groups))
        batches = []
        for group in sorted(set(self.groups.tolist())):
            members = order[self.groups[order] == group]
            whole = len(members) // self.batch_size * self.batch_size
            batches += members[:whole].reshape(-1, self.batch_size).tolist()
        return [batches[i] for i in rng.permutation(len(batches))]

    def batch(self, k: int) -> List[int]:
        while self._starts[-1] <= k:
            epoch = self._epoch(len(self._epochs))
            self._epochs.append(epoch)
            self._starts.append(self._starts[-1] + len(epoch))
        epoch = bisect.bisect_right(self._starts, k) - 1
        return self._epochs[epoch][k - self._starts[epoch]]


class _Stream(torchdata.IterableDataset):
    def __init__(self, loader: "ResumableTrainLoader"):
        self.loader = loader

    def __iter__(self):
        info = torchdata.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        start = self.loader.start_batch
        for k in itertools.count(start + worker, workers):
            yield self.loader.load_batch(k)


class ResumableTrainLoader:
    """Iterable of per-rank training batches (lists of mapped dicts, like Detectron2's
    loader), starting at global batch ``start_batch`` (set it before ``iter``)."""

    def __init__(
        self,
        dataset_dicts: Sequence[Dict],
        mapper: Callable[[Dict], Dict],
        *,
        total_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ):
        if total_batch_size % world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be divisible by the number "
                f"of processes ({world_size})."
            )
        self.dataset_dicts = list(dataset_dicts)
        self.mapper = mapper
        groups = [0 if d["width"] > d["height"] else 1 for d in self.dataset_dicts]
        self.batches = ResumableBatches(groups, total_batch_size, seed)
        self.per_rank = total_batch_size // world_size
        self.rank = rank
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.start_batch = 0

    def load_batch(self, k: int) -> List[Dict]:
        """This rank's slice of global batch ``k``, mapped."""
        mine = self.batches.batch(k)[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
        out = []
        for j, index in enumerate(mine):
            # the augmentations draw from NumPy's global generator (Detectron2's transforms)
            np.random.seed(_seed(self.seed, k, self.rank * self.per_rank + j))
            out.append(self.mapper(self.dataset_dicts[index]))
        return out

    def __iter__(self):
        if self.num_workers == 0:
            return (self.load_batch(k) for k in itertools.count(self.start_batch))
        loader = torchdata.DataLoader(
            _Stream(self), batch_size=None, num_workers=self.num_workers, collate_fn=_as_is
        )
        return iter(loader)

    def state(self) -> Dict[str, int]:
        """What decides the batches: a resumed run must have the same."""
        return {
            "seed": self.seed,
            "total_batch_size": self.batches.batch_size,
            "per_rank": self.per_rank,
            "num_images": len(self.dataset_dicts),
        }


def seed_iteration(seed: int, iteration: int) -> None:
    """Seed torch's generators for one training iteration (proposal and ROI sampling draw
    from them), so that an iteration's randomness does not depend on the ones before."""
    torch.manual_seed(_seed(seed, iteration, 1))
