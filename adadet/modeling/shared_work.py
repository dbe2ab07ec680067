"""Work that the passes of one self-distillation iteration share: done once, reused.

Every pass of an iteration (the super-net, then each student) runs the detector on the
same batch. Two of its steps give the same result at every depth:

* ``detector.preprocess_image(batched_inputs)``: normalizing and padding the images;
* the part of the backbone before the first adaptive stage
  (:meth:`adadet.depth.AdaptiveDepthModule.depth_independent_stem`: ResNet-ADN's stem,
  ViT-ADN's patch and position embeddings), whose input is then the very same tensor.

:func:`share_depth_independent_work` computes each once and hands the same result (the
same tensor, in the same autograd graph) to the later passes. Back-propagating their
weighted sum sends every pass's gradient through that tensor, where autograd adds them
before going through the stem once: the same gradients as two stem runs, up to float
rounding of the order of the additions.

BatchNorm in the stem (train mode) now updates its running statistics once per
iteration instead of twice with the same batch (see :mod:`.self_distillation`).

Not shared: the RPN's anchor labelling. Its IoU matching is deterministic but cheap (a
few ground-truth boxes against the anchors), and it samples the anchors randomly per
pass; reusing the labels would give every pass the same sample, a change of the losses,
and splitting matching from sampling would mean patching Detectron2's internals.
"""
import contextlib
from typing import Callable, Iterator, List, Tuple

import torch.nn as nn

from ..depth import backbone_modules

__all__ = ["share_depth_independent_work"]


@contextlib.contextmanager
def reuse_results(owner: object, name: str) -> Iterator[List[Tuple[object, object]]]:
    """While the block runs, ``owner.<name>(x)`` is computed once per input object ``x``;
    a call with the same object (identity: the same list or tensor, not an equal one)
    returns the first call's result. Yields the cache, ``[(input, result)]``.

    The method is shadowed by an instance attribute (nn.Module.__call__ looks ``forward``
    up on the instance), so hooks of ``owner`` still run on every call; whatever instance
    attribute was there before (a test's spy, say) is what computes, and comes back on exit.
    """
    had_own = name in vars(owner)
    previous = vars(owner).get(name)
    compute: Callable = getattr(owner, name)
    cache: List[Tuple[object, object]] = []

    def reused(*args, **kwargs):
        if len(args) != 1 or kwargs:  # not the call this is for: leave it alone
            return compute(*args, **kwargs)
        for key, result in cache:
            if key is args[0]:
                return result
        result = compute(args[0])
        cache.append((args[0], result))
        return result

    object.__setattr__(owner, name, reused)
    try:
        yield cache
    finally:
        if had_own:
            object.__setattr__(owner, name, previous)
        else:
            object.__delattr__(owner, name)


@contextlib.contextmanager
def share_depth_independent_work(detector: nn.Module) -> Iterator[None]:
    """Within the block (one training iteration, on one batch), compute the detector's
    image preprocessing and its backbone's depth-independent stem once per input and
    reuse them in every later pass. Outside of it, nothing is changed."""
    with contextlib.ExitStack() as stack:
        if callable(getattr(detector, "preprocess_image", None)):
            stack.enter_context(reuse_results(detector, "preprocess_image"))
        for module in backbone_modules(detector):
            stem = module.depth_independent_stem()
            if stem is not None:
                stack.enter_context(reuse_results(*stem))
        yield
