"""adadet's part of a LazyConfig: self-distillation, per-depth evaluation and checkpoint
loading. The same keys as ``MODEL.ADN.*`` / ``TEST.ADN.*`` of the YACS configs (their
comments in ``adadet/config.py`` say what each means and which value the authors used).

``tools/lazyconfig_train_net.py`` sets ``adn.distill.detector`` to the built model before
instantiating it, as Detectron2's entry point does with ``optimizer.params.model``.
"""
from detectron2.config import LazyCall as L

from adadet.modeling.self_distillation import SelfDistillationModel

adn = dict(
    # MODEL.ADN.DISTILL.*: each iteration the super-net learns the task and the students
    # learn from it (and from the labels, SUB_TASK_WEIGHT), one optimizer step. Students:
    # the paper's, the base-net alone (adadet's sandwich recipe: subnets=mixed_depths(4)
    # with always_students=["TTTT"], as configs/lazy/mask_rcnn_ada_r18_embedded_cpu.py)
    distill=L(SelfDistillationModel)(
        distill=True,
        subnets=["TTTT"],
        num_students=1,
        always_students=[],
        alpha=0.5,
        sub_task_weight=1.0,
        kd_weight=1.0,
        temperature=1.0,
        features=["res2", "res3", "res4", "res5"],
        pooling="none",
        reduction="mean",
        logits_weight=0.0,
        seed=0,  # draws the students (with several subnets); the same on every rank
    ),
    # TEST.ADN.DEPTHS: the settings evaluated (["all"]: the 16)
    test_depths=["FFFF", "TFFF", "TTFF", "TTTF", "TTTT"],
    # MODEL.ADN.SKIP_NORM_INIT / MODEL.ADN.LOAD_EMA: how train.init_checkpoint is loaded
    checkpoint=dict(skip_norm_init="copy", load_ema=False),
)
