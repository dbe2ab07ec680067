"""Training and per-depth evaluation from a LazyConfig (Detectron2's Python configs).

The lazy counterpart of :class:`ADNTrainer`, in the shape of Detectron2's
``tools/lazyconfig_train_net.py`` (``do_train`` / ``do_test``) with ADN's parts: the step
is :class:`ADNTrainStep` over ``instantiate(cfg.adn.distill)`` (a
:class:`SelfDistillationModel` around ``cfg.model``), checkpoints are
:class:`ADNCheckpointer`'s, and evaluation runs every setting of ``cfg.adn.test_depths``
with the same table, ``depth_eval.{json,csv}``, plot and metrics as the YACS path.

A lazy config holds Detectron2's sections (``model``, ``dataloader``, ``optimizer``,
``lr_multiplier``, ``train``) and ``adn`` (``configs/lazy/common/adn.py``).
"""
import inspect
import logging

from detectron2.config import instantiate
from detectron2.engine import create_ddp_model, hooks
from detectron2.engine.defaults import default_writers
from detectron2.utils import comm
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig

from ..checkpoint import ADNCheckpointer
from ..data.validation import check_instance_masks
from ..depth import adaptive_modules
from ..evaluation import checked_test_depths, evaluate_depths
from .ddp import ddp_kwargs
from .output_lock import holding_run_folder
from .preflight import check_run_needs
from .train_step import ADNAMPTrainStep, ADNTrainStep

__all__ = [
    "build_lazy_model",
    "check_override_keys",
    "lazy_checkpointer",
    "lazy_eval_only",
    "lazy_test",
    "lazy_train",
]

logger = logging.getLogger(__name__)


def _section(cfg, name: str):
    if name not in cfg:
        raise KeyError(
            f"The lazy config has no '{name}' section (it has {sorted(cfg.keys())}). adadet's "
            "lazy configs hold Detectron2's sections plus 'adn' (self-distillation, depths "
            "to evaluate): start from configs/lazy/mask_rcnn_ada_r50.py, or import the 'adn' "
            "section of configs/lazy/common/adn.py into your config."
        )
    return cfg[name]


def build_lazy_model(cfg):
    """``instantiate(cfg.model)`` on ``cfg.train.device``; it must hold an ADN backbone."""
    model = instantiate(cfg.model)
    if not adaptive_modules(model):
        raise ValueError(
            "cfg.model has no adaptive-depth backbone: set model.backbone.bottom_up = "
            "L(ResNetADN)(...) (or model.backbone = L(ViTSimpleFeaturePyramid)(bottom_up="
            "L(ViTADN)(...), ...)), as configs/lazy/mask_rcnn_ada_r50.py does."
        )
    return model.to(cfg.train.device)


def lazy_checkpointer(cfg, model, require_all_weights: bool = False,
                      **checkpointables) -> ADNCheckpointer:
    """The ADN checkpointer with ``cfg.adn.checkpoint``'s skip-norm and EMA choices."""
    options = dict(_section(cfg, "adn").get("checkpoint", {}))
    return ADNCheckpointer(model, cfg.train.output_dir, **options,
                           require_all_weights=require_all_weights, **checkpointables)


def lazy_test(cfg, model):
    """Evaluate ``model`` at every setting of ``cfg.adn.test_depths`` on
    ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator`` (:func:`evaluate_depths`, as
    the YACS path); returns ``{depth: {task: {metric: value}, "cost": {...}}}`` and, on the
    main process, logs the table and writes ``depth_eval.{json,csv}`` and
    ``depth_eval_pareto.png`` into ``cfg.train.output_dir``."""
    if "evaluator" not in cfg.dataloader:
        logger.info("cfg.dataloader has no evaluator: no evaluation.")
        return {}
    depths = _test_depths(cfg, model)
    dataset = str(cfg.dataloader.test.dataset.get("names", "test"))
    loaders = {dataset: instantiate(cfg.dataloader.test)}
    evaluator = instantiate(cfg.dataloader.evaluator)  # reset by each inference_on_dataset
    return evaluate_depths(
        model, depths, loaders, lambda name, depth: evaluator, cfg.train.output_dir
    )


def _dataset_names(cfg):
    """The registered datasets the train and test loaders of ``cfg`` read (names may be
    one string or a list)."""
    names = []
    for split in ("train", "test"):
        loader = cfg.dataloader.get(split)
        given = loader.get("dataset", {}).get("names") if loader is not None else None
        if given is not None:
            names += [given] if isinstance(given, str) else list(given)
    return names


def _test_depths(cfg, model):
    return checked_test_depths(model, _section(cfg, "adn").test_depths, "adn.test_depths")


def _build_train_loader(loader_cfg):
    """``instantiate(cfg.dataloader.train)``, its dataset built first and checked against
    what its mapper makes of it (a mask for every object, for a mapper that keeps masks),
    before any iteration; then passed in built, so that it is loaded once."""
    mapper = loader_cfg.get("mapper")
    if not (isinstance(loader_cfg.get("dataset"), DictConfig) and mapper is not None
            and mapper.get("use_instance_mask", False)):
        return instantiate(loader_cfg)
    names = loader_cfg.dataset.get("names", "dataloader.train.dataset")
    dataset = instantiate(loader_cfg.dataset)
    check_instance_masks(dataset, [names] if isinstance(names, str) else list(names))
    target = loader_cfg._target_
    target = locate(target) if isinstance(target, str) else target
    kwargs = {k: instantiate(v) for k, v in loader_cfg.items() if k not in ("_target_", "dataset")}
    return target(dataset=dataset, **kwargs)


def lazy_train(cfg, resume: bool = False):
    """Train ``cfg.model`` with self-distillation (``cfg.adn.distill``), as Detectron2's
    ``lazyconfig_train_net.do_train``: with ``resume`` from the last checkpoint of
    ``cfg.train.output_dir`` (weights, optimizer, scheduler, iteration), else from
    ``cfg.train.init_checkpoint``. Evaluates every ``train.eval_period`` iterations and at
    the end; returns the last evaluation's results."""
    model = build_lazy_model(cfg)
    logger.info("Model:\n%s", model)
    _test_depths(cfg, model)  # a bad list, dataset or folder must not wait for the end
    check_run_needs(model, _dataset_names(cfg), cfg.train.output_dir, "train.output_dir")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = _build_train_loader(cfg.dataloader.train)

    cfg.adn.distill.detector = model
    training_model = instantiate(cfg.adn.distill)
    ddp_model = create_ddp_model(
        training_model, **ddp_kwargs(training_model, cfg.train.device, cfg.train.get("ddp"))
    )
    amp = cfg.train.get("amp", {}).get("enabled", False)
    trainer = (ADNAMPTrainStep if amp else ADNTrainStep)(ddp_model, train_loader, optimizer)
    checkpointer = lazy_checkpointer(cfg, model, trainer=trainer)
    last_results = {}

    def test_and_keep():
        last_results.clear()
        last_results.update(lazy_test(cfg, model))
        return last_results

    main = comm.is_main_process()
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, test_and_keep),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if main
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    with holding_run_folder(cfg.train.output_dir, "train.output_dir"):
        trainer.train(start_iter, cfg.train.max_iter)
    return dict(last_results)


def lazy_eval_only(cfg, resume: bool = False, allow_random_weights: bool = False):
    """``--eval-only``: load ``cfg.train.init_checkpoint`` (with ``resume``, the last
    checkpoint of ``cfg.train.output_dir``) and evaluate every ``cfg.adn.test_depths``;
    a checkpoint that leaves weights at random init is refused unless
    ``allow_random_weights``."""
    model = build_lazy_model(cfg)
    checkpointer = lazy_checkpointer(cfg, model, require_all_weights=not allow_random_weights)
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    return lazy_test(cfg, model)


def _accepts_keyword(target, name: str) -> bool:
    if isinstance(target, str):
        target = locate(target)
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True  # no signature to check against
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def check_override_keys(cfg, overrides) -> None:
    """Refuse an override whose key the config does not have, naming the keys it has.
    Detectron2's ``apply_overrides`` adds such a key silently (a typo would train with the
    default). A new key is accepted only as an argument of a ``LazyCall`` whose target takes
    it (``model.backbone.bottom_up.switch_shortcut_norm=True``)."""
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        node, path = cfg, []
        for part in key.split("."):
            if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
                node, path = node[int(part)], path + [part]
                continue
            if isinstance(node, DictConfig) and part in node:
                node, path = node[part], path + [part]
                continue
            where = ".".join(path) or "the config"
            if isinstance(node, DictConfig) and "_target_" in node and part == key.split(".")[-1]:
                if _accepts_keyword(node["_target_"], part):
                    break
            has = sorted(node.keys()) if isinstance(node, DictConfig) else (
                f"indexes 0..{len(node) - 1}" if isinstance(node, ListConfig) else "no keys")
            raise KeyError(
                f"Override {override!r}: {where} has no key '{part}' (it has {has}). "
                "Fix the key's spelling (LazyConfig overrides are key=value, keys as in the "
                "config file)."
            )

