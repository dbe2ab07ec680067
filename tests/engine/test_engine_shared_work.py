"""The passes of a self-distillation iteration share preprocessing and the backbone's stem:
each runs once per iteration, with the losses and gradients of separate passes."""
import copy

import pytest
import torch
from detectron2.utils.events import EventStorage

from adadet import using_depth
from adadet.engine import SelfDistillationModel
from adadet.modeling.shared_work import reuse_results
from adn_testing import TINY_VIT_ADN_KEYS, set_cfg_keys
from engine_tiny_data import tiny_cfg
from test_engine_step import _batch, _build


def _count_calls(module, counts, key):
    return module.register_forward_hook(lambda *args: counts.__setitem__(key, counts[key] + 1))


def _spy_preprocess(detector, counts):
    """An instance-attribute spy on preprocess_image: counts the real computations."""
    compute = detector.preprocess_image

    def spy(batched_inputs):
        counts["preprocess"] += 1
        return compute(batched_inputs)

    detector.preprocess_image = spy
    return spy


def _iteration(detector, cfg, batch, share):
    """One training forward and backward; returns (losses, gradients, work counts)."""
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    wrapper.share_work = share
    bottom_up = detector.backbone.bottom_up
    stem_work = bottom_up.stem.conv1 if hasattr(bottom_up, "stem") else bottom_up.patch_embed
    first_stage = list(bottom_up.stage_outputs().values())[0]
    counts = {"preprocess": 0, "stem": 0, "first_stage": 0}
    spy = _spy_preprocess(detector, counts)
    handles = [_count_calls(stem_work, counts, "stem"), _count_calls(first_stage, counts, "first_stage")]
    detector.zero_grad(set_to_none=True)
    try:
        torch.manual_seed(7)  # the same proposal sampling in both runs
        with EventStorage(0):
            losses = wrapper(batch, iteration=0)
        sum(losses.values()).backward()
    finally:
        for handle in handles:
            handle.remove()
    # what the iteration shadowed is back: the spy, the stem's own forward
    assert vars(detector)["preprocess_image"] is spy
    assert "forward" not in vars(getattr(bottom_up, "stem", bottom_up))
    assert "embed" not in vars(bottom_up)
    del detector.preprocess_image
    grads = {n: p.grad.detach().clone() for n, p in detector.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads, counts


def _assert_same_losses_and_gradients(shared, separate):
    losses, grads, _ = shared
    ref_losses, ref_grads, _ = separate
    assert losses.keys() == ref_losses.keys()
    for key in losses:
        torch.testing.assert_close(losses[key], ref_losses[key], rtol=1e-4, atol=1e-6, msg=key)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        # to 1e-4 of each gradient's scale: the stem's is a sum over every position, whose
        # summation order changes (one backward on the summed gradient instead of two)
        scale = float(ref_grads[name].abs().max())
        torch.testing.assert_close(
            grads[name], ref_grads[name], rtol=1e-4, atol=1e-4 * scale + 1e-9,
            msg=lambda m: f"{name}: {m}",
        )


@pytest.fixture(scope="module")
def rcnn_setup(tiny_dataset):
    cfg = tiny_cfg()
    # a trainable stem with BatchNorm (FREEZE_AT 2, the default, freezes it to FrozenBN)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg, _build(cfg), _batch(cfg)


def test_resnet_stem_and_preprocessing_run_once_with_the_two_pass_result(rcnn_setup):
    cfg, detector, batch = rcnn_setup
    shared_model, separate_model = copy.deepcopy(detector), copy.deepcopy(detector)
    shared = _iteration(shared_model, cfg, batch, share=True)
    separate = _iteration(separate_model, cfg, batch, share=False)

    assert separate[2] == {"preprocess": 2, "stem": 2, "first_stage": 2}
    assert shared[2] == {"preprocess": 1, "stem": 1, "first_stage": 2}
    _assert_same_losses_and_gradients(shared, separate)
    # the stem is trained by both passes: its gradient is real, not a float-noise match
    stem_grad = shared[1]["backbone.bottom_up.stem.conv1.weight"]
    assert stem_grad.abs().max() > 1e-4


def test_stem_batchnorm_statistics_are_updated_once_per_iteration(rcnn_setup):
    """The stem's BN sees the same batch in both passes: its running statistics now take
    one update per iteration, as in a stock Detectron2 iteration; every other buffer is
    what two separate passes leave."""
    cfg, detector, batch = rcnn_setup
    shared_model, separate_model, stock = (copy.deepcopy(detector) for _ in range(3))
    _iteration(shared_model, cfg, batch, share=True)
    _iteration(separate_model, cfg, batch, share=False)
    with EventStorage(0), using_depth(stock, "FFFF"):  # one plain pass of the super-net
        torch.manual_seed(7)
        stock.train()(batch)

    stem_bn = "backbone.bottom_up.stem.conv1.norm."
    shared, separate = shared_model.state_dict(), separate_model.state_dict()
    initial, one_pass = detector.state_dict(), stock.state_dict()
    assert shared[stem_bn + "num_batches_tracked"] == 1
    assert separate[stem_bn + "num_batches_tracked"] == 2
    for stat in ("running_mean", "running_var"):
        torch.testing.assert_close(shared[stem_bn + stat], one_pass[stem_bn + stat], rtol=1e-4, atol=1e-6)
        # the difference is real: a second update with the same batch moves them further
        moved_once = (shared[stem_bn + stat] - initial[stem_bn + stat]).abs().max()
        moved_twice = (separate[stem_bn + stat] - initial[stem_bn + stat]).abs().max()
        assert moved_twice > 1.5 * moved_once > 0
    others = [k for k in shared if not k.startswith(stem_bn)]
    assert any(k.endswith("running_mean") for k in others)
    for key in others:
        torch.testing.assert_close(
            shared[key].float(), separate[key].float(), rtol=1e-4, atol=1e-6, msg=key
        )


def test_vit_embedding_and_preprocessing_run_once_with_the_two_pass_result(tiny_dataset):
    cfg = set_cfg_keys(tiny_cfg(), **TINY_VIT_ADN_KEYS)
    detector = _build(cfg)
    batch = _batch(cfg)
    shared = _iteration(copy.deepcopy(detector), cfg, batch, share=True)
    separate = _iteration(copy.deepcopy(detector), cfg, batch, share=False)
    assert separate[2] == {"preprocess": 2, "stem": 2, "first_stage": 2}
    assert shared[2] == {"preprocess": 1, "stem": 1, "first_stage": 2}
    _assert_same_losses_and_gradients(shared, separate)
    assert shared[1]["backbone.bottom_up.pos_embed"].abs().max() > 1e-6


def test_reuse_is_by_input_identity_and_only_inside_the_block():
    conv = torch.nn.Conv2d(3, 4, 3)
    calls = []
    conv.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(1, 3, 8, 8)
    with reuse_results(conv, "forward") as cache:
        first = conv(x)
        assert conv(x) is first  # the same input object: the first result
        other = conv(x.clone())  # an equal but different tensor is computed again
        assert other is not first and torch.equal(other, first)
        assert len(cache) == 2
    assert len(calls) == 3  # the module's hooks run on every call
    assert "forward" not in vars(conv)
    assert conv(x) is not first  # outside the block: computed every time
