#!/usr/bin/env python
"""Train or evaluate an ADN detector from a LazyConfig (Detectron2's
lazyconfig_train_net, with ADN's self-distillation step and per-depth evaluation).

Examples:
    # the embedded demo, on CPU (~8 min on 2 cores)
    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r18_embedded_cpu.py
    # COCO, 8 GPUs
    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r50.py --num-gpus 8
    # evaluate a trained model at all 16 depth settings
    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r50.py --eval-only \
        train.init_checkpoint=output/model_final.pth 'adn.test_depths=["all"]'
"""
import sys

import detectron2.utils.comm as comm
from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils.logger import setup_logger

import adadet  # noqa: F401  (registers the ADN backbones and heads)
import adadet.data  # noqa: F401  (registers the embedded datasets)
from adadet.engine.devices import launch_on_devices
from adadet.engine.lazy_training import check_override_keys, lazy_eval_only, lazy_train
from adadet.engine.output_lock import claim_before_setup
from adadet.utils.command_line import check_overrides


def load_config(args):
    """The config file, then the ``key=value`` overrides (Detectron2's syntax)."""
    cfg = LazyConfig.load(args.config_file)
    if "train" not in cfg and "MODEL" in cfg:
        sys.exit(
            f"error: {args.config_file} is a YAML config of Detectron2's yacs system (MODEL, "
            "SOLVER, ...), and this tool reads LazyConfigs (model, train, dataloader ...). Train "
            f"or evaluate it with tools/train_net.py --config-file {args.config_file}, or give a "
            "LazyConfig such as configs/lazy/*.py.")
    try:
        check_override_keys(cfg, args.opts)  # Detectron2 would add a misspelt key silently
        return LazyConfig.apply_overrides(cfg, args.opts)
    except (KeyError, ValueError) as e:
        sys.exit(f"error: {args.config_file}: {e.args[0] if e.args else e}")


def setup(args):
    cfg = load_config(args)
    if args.eval_only and not cfg.train.init_checkpoint and not args.allow_random_weights:
        sys.exit(
            "--eval-only with an empty train.init_checkpoint would evaluate randomly "
            "initialised weights. Give the checkpoint: train.init_checkpoint="
            "output/model_final.pth (or --allow-random-weights to evaluate random weights on "
            "purpose)."
        )
    if not args.eval_only:
        claim_before_setup(cfg.train.output_dir, "train.output_dir")  # one training run per folder
    default_setup(cfg, args)
    # adadet's own messages (depth evaluated, ...) in the console and output_dir/log.txt
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="adadet")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return lazy_eval_only(cfg, resume=args.resume,
                              allow_random_weights=args.allow_random_weights)
    return lazy_train(cfg, resume=args.resume)


def invoke_main() -> None:
    parser = default_argument_parser()
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="with --eval-only: evaluate even without train.init_checkpoint, or with weights "
             "that leave some layers at random init (a checkpoint of another model)",
    )
    args = parser.parse_args()
    check_overrides(parser, args.opts, pairs=False)  # key=value words
    print("Command Line Args:", args)
    launch_on_devices(main, args, load_config(args).train.device, set_device="train.device={}")


if __name__ == "__main__":
    invoke_main()
