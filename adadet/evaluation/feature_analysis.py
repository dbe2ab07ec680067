"""How much each stage's skippable sub-path changes the stage's output.

ADN's claim is that the skippable sub-path of a stage only *refines* the features its
mandatory sub-path computes, so skipping it moves the stage output a little, not
elsewhere. For each stage this measures, on real images, the output of the stage in the
super-net (every block runs) against the output of the same stage when only that stage
skips (the other stages run in full, so the stage's input is the same):

* ``kl``: KL(full || skipped) of the channel softmaxes, per position, averaged (the
  distillation loss's own measure, temperature 1);
* ``cosine``: cosine similarity of the two channel vectors, per position, averaged;
* ``relative_l2``: ||full - skipped|| / ||full|| over the whole map.

and the same in the base-net (every stage skips, so the stage's input differs as well).
A model trained without self-distillation (the study's ``super_only`` recipe) is the
reference: there nothing asks the skippable sub-paths to refine only.
"""
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..depth import backbone_modules, depth_name, using_depth
from ..modeling.distill_features import capture_features

__all__ = ["stage_refinement", "format_refinement_table"]


def _compare(full: torch.Tensor, skipped: torch.Tensor) -> Dict[str, float]:
    full, skipped = full.float(), skipped.float()
    log_p, log_q = F.log_softmax(full, dim=1), F.log_softmax(skipped, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    cosine = F.cosine_similarity(full, skipped, dim=1).mean()
    relative = (full - skipped).norm() / full.norm().clamp_min(1e-12)
    return {"kl": float(kl), "cosine": float(cosine), "relative_l2": float(relative)}


@torch.no_grad()
def stage_refinement(detector: nn.Module, batches: Sequence[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per stage: the stage, the depth that skips it alone, and the mean over
    ``batches`` of :func:`_compare` between its output in the super-net and in that depth;
    plus the same against the base-net (every stage skips: inputs differ too)."""
    adaptive = backbone_modules(detector)[0]
    stages = list(adaptive.stage_outputs())
    num_stages = adaptive.num_adaptive_stages
    was_training = detector.training
    detector.eval()
    sums: Dict[str, Dict[str, float]] = {}
    try:
        for batch in batches:
            images = detector.preprocess_image(batch).tensor
            with using_depth(detector, "F" * num_stages), capture_features(detector, stages) as rec:
                detector.backbone(images)
            full = {name: maps[0] for name, maps in rec.items()}
            settings = {}
            for index, name in enumerate(stages):
                settings[name] = depth_name([i == index for i in range(num_stages)])
            settings["base"] = "T" * num_stages
            for index, name in enumerate(stages):
                for kind, depth in (("alone", settings[name]), ("base", settings["base"])):
                    with using_depth(detector, depth), capture_features(detector, [name]) as rec:
                        detector.backbone(images)
                    for key, value in _compare(full[name], rec[name][0]).items():
                        sums.setdefault(f"{name}/{kind}", {}).setdefault(key, 0.0)
                        sums[f"{name}/{kind}"][key] += value / len(batches)
    finally:
        detector.train(was_training)
    rows = []
    for index, name in enumerate(stages):
        alone, base = sums[f"{name}/alone"], sums[f"{name}/base"]
        rows.append({
            "stage": name,
            "skipped_alone": depth_name([i == index for i in range(num_stages)]),
            **{f"{k}": v for k, v in alone.items()},
            **{f"base_{k}": v for k, v in base.items()},
        })
    return rows


def format_refinement_table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = [
        "| stage | skipped alone | KL | cosine | relative L2 | in the base-net: KL | cosine | relative L2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['skipped_alone']} | {r['kl']:.4f} | {r['cosine']:.3f} | "
            f"{r['relative_l2']:.3f} | {r['base_kl']:.4f} | {r['base_cosine']:.3f} | "
            f"{r['base_relative_l2']:.3f} |"
        )
    return "\n".join(lines)
