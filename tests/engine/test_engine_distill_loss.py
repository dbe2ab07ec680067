"""The distillation losses of adadet.modeling.distill."""
import math

import pytest
import torch
import torch.nn.functional as F

from adadet.modeling.distill import channel_kl_divergence, feature_kd_loss, logits_kd_loss


def _feats(seed, shapes=(("p2", (2, 8, 6, 5)), ("p3", (2, 8, 3, 3)))):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=g) for name, shape in shapes}


def test_zero_for_equal_features():
    feats = _feats(0)
    copy = {k: v.clone() for k, v in feats.items()}
    assert feature_kd_loss(feats, copy, temperature=2.0).item() == 0.0


def test_positive_for_different_features():
    assert feature_kd_loss(_feats(0), _feats(1), temperature=1.0).item() > 0


def test_matches_kl_definition_and_mean_over_levels():
    student, teacher = _feats(0), _feats(1)
    t = 3.0
    per_level = []
    for name in ("p2", "p3"):
        s, te = student[name], teacher[name]
        n, c, h, w = s.shape
        s2 = s.permute(0, 2, 3, 1).reshape(-1, c) / t
        t2 = te.permute(0, 2, 3, 1).reshape(-1, c) / t
        kl = F.kl_div(
            F.log_softmax(s2, 1), F.log_softmax(t2, 1), log_target=True, reduction="batchmean"
        )
        per_level.append(kl * t * t)
    expected = sum(per_level) / len(per_level)
    got = feature_kd_loss(student, teacher, temperature=t)
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)
    # a subset of levels
    only_p3 = feature_kd_loss(student, teacher, temperature=t, features=["p3"])
    assert math.isclose(only_p3.item(), per_level[1].item(), rel_tol=1e-5)


def test_teacher_gets_no_gradient():
    student = {k: v.requires_grad_() for k, v in _feats(0).items()}
    teacher = {k: v.requires_grad_() for k, v in _feats(1).items()}
    feature_kd_loss(student, teacher).backward()
    assert all(v.grad is None for v in teacher.values())
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in student.values())


def test_errors_name_the_problem():
    with pytest.raises(KeyError, match="p7"):
        feature_kd_loss(_feats(0), _feats(1), features=["p7"])
    with pytest.raises(ValueError, match="shape"):
        channel_kl_divergence(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="temperature"):
        feature_kd_loss(_feats(0), _feats(1), temperature=0.0)


def test_logits_kd_loss():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert logits_kd_loss(a, a.clone()).item() == 0.0
    assert logits_kd_loss(a, b).item() > 0
    # binary logits equal the 2-class softmax of [x, 0]
    x, y = torch.randn(7, generator=g), torch.randn(7, generator=g)
    two_class = logits_kd_loss(torch.stack([x, 0 * x], -1), torch.stack([y, 0 * y], -1))
    assert math.isclose(logits_kd_loss(x, y, binary=True).item(), two_class.item(), rel_tol=1e-6)


def _uniform_map(logits, n=2, h=3, w=4):
    """(n, C, h, w) map whose every position holds ``logits``."""
    return torch.tensor(logits, dtype=torch.float32).view(1, -1, 1, 1).expand(n, -1, h, w)


# KL([0.75, 0.25] || [0.5, 0.5]), by hand
KL_3_TO_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def test_per_position_reductions_give_the_documented_values():
    teacher, student = _uniform_map([math.log(3.0), 0.0]), _uniform_map([0.0, 0.0])
    mean = channel_kl_divergence(student, teacher, pooling="none", reduction="mean")
    batchmean = channel_kl_divergence(student, teacher, pooling="none", reduction="batchmean")
    assert math.isclose(mean.item(), KL_3_TO_1, rel_tol=1e-5)
    # summed over the 3 x 4 positions of each image, averaged over the 2 images
    assert math.isclose(batchmean.item(), 12 * KL_3_TO_1, rel_tol=1e-5)
    # what torch's KLDivLoss(reduction="batchmean") computes on the (N, C, H, W) maps
    torch_batchmean = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(
        F.log_softmax(student, 1), F.log_softmax(teacher, 1)
    )
    assert math.isclose(batchmean.item(), torch_batchmean.item(), rel_tol=1e-5)


def test_global_pooling_compares_the_pooled_maps_only():
    # the teacher's positions alternate between two logit vectors whose mean is
    # [log 3, 0]: per position the KL is large, after global pooling it is KL_3_TO_1
    a, b = _uniform_map([math.log(3.0) + 4.0, 0.0]), _uniform_map([math.log(3.0) - 4.0, 0.0])
    teacher = torch.where(torch.arange(4).view(1, 1, 1, 4) % 2 == 0, a, b)
    student = _uniform_map([0.0, 0.0])
    for reduction in ("mean", "batchmean"):  # one distribution per image: the same
        pooled = channel_kl_divergence(student, teacher, pooling="global", reduction=reduction)
        assert math.isclose(pooled.item(), KL_3_TO_1, rel_tol=1e-5)
    per_position = channel_kl_divergence(student, teacher, pooling="none")
    assert per_position.item() > 4 * KL_3_TO_1  # 0.57 vs 0.13
    # a student equal to the teacher's mean map, but not to its positions: zero after pooling
    mean_map = _uniform_map([math.log(3.0), 0.0])
    assert channel_kl_divergence(mean_map, teacher, pooling="global").item() < 1e-6


def test_feature_kd_loss_passes_pooling_and_reduction_to_every_map():
    teacher = {
        "res2": _uniform_map([math.log(3.0), 0.0]),  # 3 x 4 positions
        "p2": _uniform_map([math.log(3.0), 0.0], h=2, w=2),
    }
    student = {k: torch.zeros_like(v) for k, v in teacher.items()}
    loss = feature_kd_loss(student, teacher, reduction="batchmean")
    assert math.isclose(loss.item(), (12 + 4) / 2 * KL_3_TO_1, rel_tol=1e-5)  # mean over maps
    with pytest.raises(ValueError, match="pooling"):
        feature_kd_loss(student, teacher, pooling="max")
    with pytest.raises(ValueError, match="reduction"):
        feature_kd_loss(student, teacher, reduction="sum")
