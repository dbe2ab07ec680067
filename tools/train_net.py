#!/usr/bin/env python
"""Train or evaluate an ADN detector (Detectron2's train_net, with ADN's trainer).

Examples:
    # the embedded demo, on CPU (~8 min on 2 cores)
    tools/train_net.py --config-file configs/mask_rcnn_ada_r18_embedded_cpu.yaml
    # COCO, 8 GPUs (COCO under $DETECTRON2_DATASETS/coco)
    tools/train_net.py --config-file configs/mask_rcnn_ada_r50.yaml --num-gpus 8
    # evaluate a trained model at every depth of TEST.ADN.DEPTHS (["all"]: the 16)
    tools/train_net.py --config-file configs/mask_rcnn_ada_r50.yaml --eval-only \
        MODEL.WEIGHTS output/model_final.pth
    # ... at the base-net depth only (MODEL.ADN.DEPTH given alone: that one depth)
    tools/train_net.py --config-file configs/mask_rcnn_ada_r50.yaml --eval-only \
        MODEL.WEIGHTS output/model_final.pth MODEL.ADN.DEPTH TTTT
"""
import sys

import detectron2.utils.comm as comm
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils.logger import setup_logger

import adadet  # noqa: F401  (registers the ADN backbones)
import adadet.data  # noqa: F401  (registers the embedded adadet_shapes_* datasets)
from adadet import add_adn_config
from adadet.config import merge_config
from adadet.checkpoint import ADNCheckpointer
from adadet.engine import ADNTrainer
from adadet.engine.devices import launch_on_devices
from adadet.engine.output_lock import claim_before_setup
from adadet.evaluation import verify_depth_results
from adadet.utils.command_line import check_overrides


class Trainer(ADNTrainer):
    """The trainer of this script; subclass hooks (build_evaluator, test) go here."""


def load_config(args):
    """Detectron2's defaults + adadet's keys, then the file, then command-line opts."""
    cfg = get_cfg()
    add_adn_config(cfg)
    merge_config(cfg, args.config_file, args.opts)  # clear errors for ints in float keys
    return cfg


def setup(args):
    """Config: Detectron2's defaults + adadet's keys, then the file, then command-line opts."""
    cfg = load_config(args)
    if args.eval_only:
        check_eval_only(cfg, args)
    cfg.freeze()
    if not args.eval_only:
        claim_before_setup(cfg.OUTPUT_DIR, "OUTPUT_DIR")  # one training run per folder
    default_setup(cfg, args)
    # adadet's own messages (depth evaluated, ...) in the console and OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="adadet")
    return cfg


def check_eval_only(cfg, args) -> None:
    """--eval-only evaluates TEST.ADN.DEPTHS; MODEL.ADN.DEPTH given on the command line
    without TEST.ADN.DEPTHS evaluates that one depth. Random weights only when asked."""
    given = args.opts[0::2]
    if "MODEL.ADN.DEPTH" in given and "TEST.ADN.DEPTHS" not in given:
        cfg.TEST.ADN.DEPTHS = [cfg.MODEL.ADN.DEPTH]
    if not cfg.MODEL.WEIGHTS and not args.allow_random_weights:
        sys.exit(
            "--eval-only with an empty MODEL.WEIGHTS would evaluate randomly initialised "
            "weights. Give the checkpoint: MODEL.WEIGHTS output/model_final.pth (or "
            "--allow-random-weights to evaluate random weights on purpose)."
        )


def main(args):
    cfg = setup(args)

    if args.eval_only:
        model = Trainer.build_model(cfg)
        # every weight loaded, or random layers would be evaluated (unless asked for)
        ADNCheckpointer.from_config(
            cfg, model, save_dir=cfg.OUTPUT_DIR, require_all_weights=not args.allow_random_weights
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            if cfg.TEST.ADN.PRECISE_BN.ENABLED:
                # the weights with their per-depth BN statistics, for deployment
                ADNCheckpointer(model, save_dir=cfg.OUTPUT_DIR).save("model_precise_bn")
                path = f"{cfg.OUTPUT_DIR}/model_precise_bn.pth"
                print(f"Weights with per-depth BN statistics: {path}")
            verify_depth_results(cfg, res)  # TEST.EXPECTED_RESULTS, per depth
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    parser = default_argument_parser()
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="with --eval-only: evaluate even without MODEL.WEIGHTS, or with weights that "
             "leave some layers at random init (a checkpoint of another model)",
    )
    args = parser.parse_args()
    check_overrides(parser, args.opts)
    print("Command Line Args:", args)
    launch_on_devices(main, args, load_config(args).MODEL.DEVICE)


if __name__ == "__main__":
    invoke_main()
