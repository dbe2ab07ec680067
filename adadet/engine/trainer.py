"""``ADNTrainer``: Detectron2's DefaultTrainer with ADN's self-distillation step.

Differences from ``DefaultTrainer`` (everything else, hooks included, is inherited):

* the DDP-wrapped module is a :class:`SelfDistillationModel` around the detector, and the
  step is :class:`ADNTrainStep` / :class:`ADNAMPTrainStep` (``train_step.py``);
* the optimizer is :func:`build_adn_optimizer` (Detectron2's, plus ViT-ADN's layer-wise
  LR decay and AdamW);
* checkpoints hold the bare detector (ADNCheckpointer), plus the optimizer, grad scaler
  and scheduler state, so ``--resume`` restores all of them (also on detectron2 v0.6,
  whose DefaultTrainer does not save the optimizer);
* evaluation covers every depth setting of ``TEST.ADN.DEPTHS`` (COCOEvaluator, with
  pycocotools when detectron2 has no compiled ops), with cost and latency per setting
  (:func:`adadet.evaluation.evaluate_depths`, which the lazy configs' loop runs too);
* the datasets are checked before a loader is built, with a message naming where
  Detectron2 looked for them (:func:`adadet.data.check_datasets_available`), and an image that cannot be read is named with the fix
  (CheckedDatasetMapper);
* with ``DATALOADER.EXACT_RESUME``, batch ``k`` and iteration ``k``'s randomness depend on
  (SEED, k) only, so ``--resume`` continues exactly (``adadet.data.resumable_loader``);
* a diverged run (a non-finite loss term: FloatingPointError naming the term and the
  iteration) stops without the end-of-training checkpoint and evaluation, so the last
  good checkpoint stays the one ``--resume`` starts from.
"""
import logging
import os
import weakref

from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import ADNCheckpointer
from ..data import CheckedDatasetMapper
from ..data.validation import check_instance_masks
from ..data.availability import check_datasets_available
from .output_lock import holding_run_folder
from .preflight import check_run_needs
from ..data.resumable_loader import ResumableTrainLoader, seed_iteration
from ..depth import set_depth
from ..env import has_compiled_ops
from ..calibration import calibrate_depth_bn_statistics
from ..evaluation import checked_test_depths, evaluate_depths, verify_depth_results
from ..modeling.self_distillation import SelfDistillationModel, unwrap_detector
from .ddp import ddp_kwargs
from .train_step import ADNAMPTrainStep, ADNTrainStep
from .optimizer import build_adn_optimizer

__all__ = ["ADNTrainer"]

logger = logging.getLogger(__name__)


class ADNTrainer(DefaultTrainer):
    """Trains an ADN detector with self-distillation (``MODEL.ADN.DISTILL``).

    Attributes:
        detector: the bare detector (what is checkpointed and evaluated).
        model: as in DefaultTrainer, the module the step calls (DDP-wrapped
            :class:`SelfDistillationModel`).
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)  # DefaultTrainer.__init__ builds its own step
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        check_datasets_available(cfg.DATASETS.TRAIN)  # before the slow parts

        detector = self.build_model(cfg)
        # evaluated during and after training: a bad list, dataset or folder must not wait
        # for the end
        checked_test_depths(detector, cfg.TEST.ADN.DEPTHS, "TEST.ADN.DEPTHS")
        check_run_needs(detector, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST], cfg.OUTPUT_DIR,
                        "OUTPUT_DIR")
        optimizer = self.build_optimizer(cfg, detector)
        data_loader = self.build_train_loader(cfg)

        training_model = self.build_training_model(cfg, detector)
        model = create_ddp_model(training_model, **ddp_kwargs(training_model, cfg.MODEL.DEVICE))
        step_cls = ADNAMPTrainStep if cfg.SOLVER.AMP.ENABLED else ADNTrainStep
        self._trainer = step_cls(model, data_loader, optimizer)

        self.detector = detector
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = ADNCheckpointer.from_config(
            cfg, detector, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.diverged = False
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_training_model(cls, cfg, detector) -> SelfDistillationModel:
        return SelfDistillationModel.from_config(cfg, detector)

    def train(self):
        """DefaultTrainer.train, with TEST.EXPECTED_RESULTS checked per depth
        (:func:`verify_depth_results`; Detectron2's verify_results cannot read them)."""
        try:
            with holding_run_folder(self.cfg.OUTPUT_DIR, "OUTPUT_DIR"):
                TrainerBase.train(self, self.start_iter, self.max_iter)
            if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
                if not hasattr(self, "_last_eval_results"):
                    raise RuntimeError(
                        "TEST.EXPECTED_RESULTS is set, but training ran no evaluation "
                        "(DATASETS.TEST empty?)."
                    )
                verify_depth_results(self.cfg, self._last_eval_results)
                return self._last_eval_results
        finally:
            # The step switches depths with context managers; this makes sure of it.
            set_depth(self.detector, self.cfg.MODEL.ADN.DEPTH)

    def run_step(self):
        if self.cfg.DATALOADER.EXACT_RESUME:
            seed_iteration(self.cfg.SEED, self.iter)
        try:
            super().run_step()
        except FloatingPointError:
            self.diverged = True
            raise

    def after_train(self):
        if not self.diverged:
            return super().after_train()
        # Detectron2's hooks would save the weights as "model_final" (with the failed
        # iteration, so --resume would think training done) and evaluate them; the other
        # hooks (writers, timer) still close properly.
        logger.error(
            "Training diverged at iteration %d: no final checkpoint or evaluation. Resume "
            "from the last good checkpoint (--resume) after the cause is fixed, e.g. with a "
            "lower SOLVER.BASE_LR or SOLVER.CLIP_GRADIENTS.",
            self.iter,
        )
        self.storage.iter = self.iter
        for hook in self._hooks:
            if not isinstance(hook, (hooks.PeriodicCheckpointer, hooks.EvalHook)):
                hook.after_train()

    # Detectron2 v0.6's DefaultTrainer saves only the iteration and hooks (scheduler);
    # adding the step's state (optimizer, grad scaler) makes --resume exact on v0.6 too.
    def state_dict(self):
        ret = TrainerBase.state_dict(self)
        ret["_trainer"] = self._trainer.state_dict()
        loader = self._trainer.data_loader
        if isinstance(loader, ResumableTrainLoader):
            ret["data_order"] = loader.state()
        return ret

    def load_state_dict(self, state_dict):
        loader = self._trainer.data_loader
        saved = state_dict.get("data_order")
        if isinstance(loader, ResumableTrainLoader) and saved is not None and saved != loader.state():
            raise ValueError(
                f"The checkpoint was trained with batches from {saved}; this run would draw "
                f"them from {loader.state()}, so --resume could not continue exactly. Fix: "
                "resume with the same SEED, SOLVER.IMS_PER_BATCH, number of processes and "
                "training set, or set DATALOADER.EXACT_RESUME False."
            )
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_optimizer(cls, cfg, model):
        """Detectron2's optimizer, plus ViT-ADN's layer-wise LR decay
        (MODEL.VIT_ADN.LR_DECAY_RATE) and AdamW (SOLVER.OPTIMIZER): build_adn_optimizer."""
        return build_adn_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = CheckedDatasetMapper(cfg, True)
        if cfg.DATALOADER.EXACT_RESUME and cfg.SEED < 0:
            raise ValueError(
                "DATALOADER.EXACT_RESUME needs a fixed SEED (>= 0): the batches are computed "
                f"from it, and SEED {cfg.SEED} draws a new one per run. Set e.g. SEED 0."
            )
        dataset_dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=(
                cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
            ),
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        if mapper.use_instance_mask:
            check_instance_masks(dataset_dicts, cfg.DATASETS.TRAIN)
        if not cfg.DATALOADER.EXACT_RESUME:
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset_dicts)
        return ResumableTrainLoader(
            dataset_dicts,
            mapper,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            seed=cfg.SEED,
            rank=comm.get_rank(),
            world_size=comm.get_world_size(),
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        loader = self._trainer.data_loader
        if isinstance(loader, ResumableTrainLoader) and loader.start_batch != self.start_iter:
            loader.start_batch = self.start_iter  # batch k is iteration k's
            self._trainer.restart_data()

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        # The fast COCOeval is C++ (detectron2._C); without it, pycocotools.
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops()
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate every depth setting of ``TEST.ADN.DEPTHS`` (at ``TEST.EVAL_PERIOD``, at
        the end of training and with ``--eval-only``).

        Returns ``{depth: {task: {metric: value}, "cost": {...}}}``, which Detectron2's
        EvalHook turns into scalars such as ``TTFF/bbox/AP`` (metrics.json, TensorBoard).
        The main process also logs one table (a row per setting) and writes
        ``OUTPUT_DIR/depth_eval.{json,csv}`` and ``depth_eval_pareto.png``; the table and
        the plot describe the first test dataset.
        """
        detector = unwrap_detector(model)
        depths = checked_test_depths(detector, cfg.TEST.ADN.DEPTHS, "TEST.ADN.DEPTHS")
        if not cfg.DATASETS.TEST:  # Detectron2 evaluates after the last iteration anyway
            logger.info("DATASETS.TEST is empty: no evaluation.")
            return {}
        check_datasets_available(cfg.DATASETS.TEST)
        if cfg.TEST.ADN.PRECISE_BN.ENABLED:
            check_datasets_available(cfg.DATASETS.TRAIN)
            num_iter = cfg.TEST.ADN.PRECISE_BN.NUM_ITER
            logger.info(
                f"Re-estimating BN statistics at {len(depths)} depth settings on {num_iter} "
                f"training batches each (TEST.ADN.PRECISE_BN)"
            )
            calibrate_depth_bn_statistics(
                detector, cls.build_train_loader(cfg), depths, num_iter
            )

        # Built once and reused at every depth: each would reload the dataset (loader) and
        # its ground truth (COCOEvaluator). inference_on_dataset resets an evaluator before
        # use; one that keeps its folder in _output_dir (Detectron2's, v0.6 and main) is
        # pointed to the depth's folder, any other is built again for each depth.
        loaders = {name: cls.build_test_loader(cfg, name) for name in cfg.DATASETS.TEST}
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(loaders):
            raise ValueError(
                f"{len(evaluators)} evaluators for {len(loaders)} datasets of DATASETS.TEST "
                f"{list(cfg.DATASETS.TEST)}: give one per dataset, in the same order."
            )
        given = dict(zip(cfg.DATASETS.TEST, evaluators or ()))
        reusable = {}

        def evaluator_for(name, depth):
            if name in given:
                return given[name]
            folder = os.path.join(cfg.OUTPUT_DIR, "inference", depth)
            if name in reusable:
                reusable[name]._output_dir = folder
                return reusable[name]
            evaluator = cls.build_evaluator(cfg, name, folder)
            if hasattr(evaluator, "_output_dir"):
                reusable[name] = evaluator
            return evaluator

        return evaluate_depths(detector, depths, loaders, evaluator_for, cfg.OUTPUT_DIR)
