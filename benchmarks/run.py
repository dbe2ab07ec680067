#!/usr/bin/env python
"""Benchmarks of adadet: what each depth costs, what the adaptive machinery costs.

    python benchmarks/run.py                      # every section, defaults for the device
    python benchmarks/run.py --size 800 1333      # the paper's input size
    python benchmarks/run.py --device cuda --amp  # GPU, mixed precision
    python benchmarks/run.py --quick              # tiny smoke configuration (R-18, 128x160)

Sections (``--sections``, all by default), measured in this one process:

* latency:  Mask R-CNN inference latency (batch 1) at each depth of the chain, as a ratio
  to FFFF, next to the FLOPs ratio of the bottom-up backbone and of the whole detector;
* overhead: ADN at FFFF against Detectron2's stock ResNet-FPN Mask R-CNN with the same
  weights (outputs checked identical), interleaved;
* switch:   microseconds to switch the depth of a built model, R-50 and R-101;
* train:    one self-distillation iteration (the paper's super-net + base-net) against one
  stock iteration on the same batch: time and peak memory; the other student schemes
  (adadet's sandwich recipe among them) against it.

Timed runs of the compared settings are interleaved round-robin (each round starting at
another setting) so that drift of the machine affects all of them alike. Prints a table
per section and writes benchmarks/results/<device-slug>.json (see benchmarks/README.md).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import adadet  # noqa: E402
from adadet.utils.command_line import positive_int_argument  # noqa: E402
from adadet.depth import mixed_depths  # noqa: E402
from adadet.engine import SelfDistillationModel  # noqa: E402
from adadet.evaluation import backbone_cost, model_cost  # noqa: E402
from adadet.modeling.adaptive_parts import config_depth_layout  # noqa: E402

import harness as H  # noqa: E402

SECTIONS = ("latency", "overhead", "switch", "train")
SUPER = "FFFF"
OVERHEAD_TARGET = 1.02
# --quick: heads the size of the project's embedded R-18 CPU config and fewer boxes, so the
# smoke run takes seconds (the heads, not the backbone, dominate a tiny input).
QUICK_OVERRIDES = (
    "MODEL.FPN.OUT_CHANNELS", 64, "MODEL.ROI_BOX_HEAD.FC_DIM", 256,
    "MODEL.ROI_MASK_HEAD.CONV_DIM", 64, "MODEL.RPN.POST_NMS_TOPK_TEST", 100,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 200, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64,
)
TRAIN_TIME_TARGET = 2.1


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench {time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                        help="input size (default: 512 672 on CPU, 800 1333 on CUDA)")
    parser.add_argument("--images", type=int, default=3, help="fixed inputs (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and weights")
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50, 101),
                        help="ResNet depth of the detector (default 50)")
    parser.add_argument("--config-file", default=str(H.ADN_CONFIG), metavar="FILE",
                        help="the latency section's Mask R-CNN config (default "
                             "configs/mask_rcnn_ada_r50.yaml; e.g. mask_rcnn_ada_r50_whole.yaml, "
                             "whose neck and heads adapt too); the other sections compare the "
                             "backbone-only detector with Detectron2's")
    parser.add_argument("--depths", nargs="+", default=None,
                        help="depth settings of the latency table, or 'all' (default: the "
                             "config's TEST.ADN.DEPTHS, e.g. FFFF TFFF TTFF TTTF TTTT)")
    parser.add_argument("--detections", default=100,
                        type=positive_int_argument("number of detections", "--detections 100"),
                        help="boxes kept per image, whatever the weights (score threshold 0, "
                             "no NMS: adadet.evaluation.fixed_detections; default 100)")
    parser.add_argument("--detector-flops", choices=("trace", "derive"), default="trace",
                        help="trace: fvcore traces the whole detector at every depth (slow); "
                             "derive: traces FFFF only and swaps in each depth's backbone "
                             "FLOPs (exact while proposal/detection counts are equal)")
    parser.add_argument("--repeats", type=int, help="timed rounds over all inputs "
                        "(default: 5 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 1 CPU, 3 CUDA)")
    parser.add_argument("--switches", type=int, default=20000,
                        help="depth switches timed per operation and model (default 20000)")
    parser.add_argument("--switch-models", nargs="+", type=int, default=[50, 101],
                        help="ResNet depths of the switching section (default 50 101)")
    parser.add_argument("--train-batch", type=int, default=2, help="images per training batch")
    parser.add_argument("--train-repeats", type=int,
                        help="timed iterations of each kind (default: 5 on CPU, 20 on CUDA)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--output", help="JSON path (default benchmarks/results/<device>.json)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke configuration: R-18 with small heads, 128x160, 1 image, "
                             "2 rounds without warm-up, 10 detections")
    args = parser.parse_args(argv)

    cuda = args.device.startswith("cuda")
    if args.quick:
        args.size = args.size or [128, 160]
        args.images, args.depth, args.detections = 1, 18, 10
        args.detector_flops = "derive"
        args.repeats = args.repeats or 2
        # No warm-up round: every setting has run once untimed already (counts, FLOPs,
        # saved activations); smoke numbers mean nothing anyway.
        args.warmup = 0 if args.warmup is None else args.warmup
        args.switches = min(args.switches, 400)
        args.train_batch, args.train_repeats = 1, args.train_repeats or 2
    args.size = args.size or ([800, 1333] if cuda else [512, 672])
    args.repeats = args.repeats or (20 if cuda else 5)
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    args.train_repeats = args.train_repeats or (20 if cuda else 5)
    args.cfg_overrides = QUICK_OVERRIDES if args.quick else ()
    cfg = H.detector_cfg(args.depth, torch.device("cpu"), config_file=args.config_file)
    layout = config_depth_layout(cfg)
    try:
        args.depths = layout.expand(args.depths or list(cfg.TEST.ADN.DEPTHS))
    except ValueError as e:
        parser.error(f"--depths: {e}")
    args.super = layout.normalize("super")
    if args.super not in args.depths:  # every ratio is to the super-net
        args.depths.insert(0, args.super)
    if len(layout.parts) > 1:  # the neck and heads change too: nothing to derive from
        args.detector_flops = "trace"
    return args


def _cfg(args, device, stock=False, resnet_depth=None, config_file=None):
    return H.detector_cfg(resnet_depth or args.depth, device, stock=stock,
                          detections=args.detections, overrides=args.cfg_overrides,
                          config_file=config_file)


def _build(cfg, seed: int, train: bool = False):
    torch.manual_seed(seed)  # the same random weights in every section
    return build_model(cfg).train(train)


def _count_hooks(model):
    """Proposals the RPN keeps for the last image, recorded by a hook (to show that the ROI
    heads' work is the same at every depth)."""
    seen = {}

    def hook(module, inputs, output):
        seen["proposals"] = len(output[0][0])

    return seen, model.proposal_generator.register_forward_hook(hook)


# --------------------------------------------------------------------------- 1. latency


def bench_latency(args, device) -> Dict:
    """Latency of each depth setting (whole detector and bottom-up backbone), FLOPs."""
    cfg = _cfg(args, device, config_file=args.config_file)
    model = _build(cfg, args.seed)
    bottom_up = model.backbone.bottom_up
    inputs, _ = H.make_inputs(args.images, args.size, args.seed, device)
    backbone_size = H.padded_size(args.size, model.backbone.size_divisibility)

    rows = {}
    seen, handle = _count_hooks(model)
    for setting in args.depths:
        trace = args.detector_flops == "trace" or setting == args.super
        log(f"latency: FLOPs of {setting}" + (" (fvcore trace of the detector)" if trace else ""))
        with adadet.using_depth(model, setting):
            with torch.no_grad(), H.autocast(device, args.amp):
                outputs = model(inputs[:1])
            rows[setting] = {
                "depth": setting,
                "detections_per_image": len(outputs[0]["instances"]),
                "proposals_per_image": seen["proposals"],
                "backbone": backbone_cost(bottom_up, backbone_size),
                # One image: with fixed proposal and detection counts, the FLOPs of every
                # image of one size are the same.
                "detector": model_cost(model, inputs[:1]) if trace else None,
            }
    handle.remove()
    ref = rows[args.super]
    for row in rows.values():
        if row["detector"] is None:  # --detector-flops derive: only the bottom-up changes
            row["detector"] = {
                key: ref["detector"][key] - ref["backbone"][key] + row["backbone"][key]
                for key in ("flops", "params")
            }
            row["detector"]["derived"] = True

    with torch.no_grad():
        tensors = [model.preprocess_image([one]).tensor for one in inputs]
    detector_s = {s: [] for s in args.depths}
    backbone_s = {s: [] for s in args.depths}
    rounds = args.warmup + args.repeats
    progress = H.Progress("latency", rounds, log)
    with torch.no_grad(), H.autocast(device, args.amp):
        for round_index in range(rounds):
            for i, one in enumerate(inputs):
                for setting in H.rotated(args.depths, round_index + i):
                    adadet.set_depth(model, setting)
                    t_detector = H.time_call(lambda: model([one]), device)
                    t_backbone = H.time_call(lambda: bottom_up(tensors[i]), device)
                    if round_index >= args.warmup:
                        detector_s[setting].append(t_detector)
                        backbone_s[setting].append(t_backbone)
            progress.step("(warm-up)" if round_index < args.warmup else "")

    ref_detector = H.summarize(detector_s[args.super])
    ref_backbone = H.summarize(backbone_s[args.super])
    for setting, row in rows.items():
        row["detector_latency"] = H.summarize(detector_s[setting])
        row["backbone_latency"] = H.summarize(backbone_s[setting])
        row["detector_latency_ratio"] = H.ratio(
            row["detector_latency"]["median_ms"], ref_detector["median_ms"])
        row["backbone_latency_ratio"] = H.ratio(
            row["backbone_latency"]["median_ms"], ref_backbone["median_ms"])
        row["detector_flops_ratio"] = H.ratio(row["detector"]["flops"], ref["detector"]["flops"])
        row["backbone_flops_ratio"] = H.ratio(row["backbone"]["flops"], ref["backbone"]["flops"])
    return {
        "model": f"Mask R-CNN R{args.depth}-FPN (ADN, {Path(args.config_file).name}), random init, eval",
        "input_size": list(args.size),
        "backbone_input_size": backbone_size,
        "score_thresh_test": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "detections_per_image_max": cfg.TEST.DETECTIONS_PER_IMAGE,
        "roi_work_fixed": len({(r["proposals_per_image"], r["detections_per_image"])
                               for r in rows.values()}) == 1,
        "rows": list(rows.values()),
    }


def latency_table(result: Dict) -> str:
    rows = [
        [
            r["depth"],
            f"{r['detector_latency']['median_ms']:.1f} / {r['detector_latency']['p90_ms']:.1f}",
            f"{r['detector_latency_ratio']:.3f}",
            f"{r['detector_flops_ratio']:.3f}",
            f"{r['backbone_latency']['median_ms']:.1f} / {r['backbone_latency']['p90_ms']:.1f}",
            f"{r['backbone_latency_ratio']:.3f}",
            f"{r['backbone_flops_ratio']:.3f}",
            f"{r['detector']['flops'] / 1e9:.1f}",
            f"{r['backbone']['flops'] / 1e9:.2f}",
            r["proposals_per_image"],
            r["detections_per_image"],
        ]
        for r in result["rows"]
    ]
    headers = ["depth", "detector ms\nmedian / p90", "latency\nratio", "FLOPs\nratio",
               "backbone ms\nmedian / p90", "latency\nratio", "FLOPs\nratio",
               "detector\nGFLOPs", "backbone\nGFLOPs", "proposals/\nimage", "dets/\nimage"]
    text = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    if not result["roi_work_fixed"]:
        text += ("\nnote: proposal or detection counts differ across depths, so the ROI heads "
                 "do not do the same work at each (input too small for the proposal count?)")
    return text


# --------------------------------------------------------------------------- 2. overhead


def _assert_same_outputs(adn, stock, inputs, amp, device) -> List[int]:
    """The two detectors must predict exactly the same boxes, scores, classes and masks.
    cuDNN is made deterministic meanwhile so both pick the same kernels."""
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    counts = []
    try:
        with torch.no_grad(), H.autocast(device, amp):
            for index, one in enumerate(inputs):
                a = adn([one])[0]["instances"]
                b = stock([one])[0]["instances"]
                for field in ("pred_boxes", "scores", "pred_classes", "pred_masks"):
                    x, y = a.get(field), b.get(field)
                    x, y = getattr(x, "tensor", x), getattr(y, "tensor", y)
                    if not torch.equal(x, y):  # not `assert`: must hold under python -O
                        detail = (
                            f"max |diff| {(x.float() - y.float()).abs().max().item():.3g}"
                            if x.shape == y.shape else f"shapes {tuple(x.shape)} != {tuple(y.shape)}")
                        raise AssertionError(
                            f"ADN at {SUPER} and the stock detector differ in {field} on image "
                            f"{index}: {detail}")
                counts.append(len(a))
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
    return counts


def bench_overhead(args, device) -> Dict:
    """ADN at FFFF against Detectron2's stock ResNet-FPN Mask R-CNN with the same weights."""
    adn_cfg = _cfg(args, device)
    stock_cfg = _cfg(args, device, stock=True)
    differences = H.model_cfg_differences(adn_cfg, stock_cfg)
    if differences:
        raise RuntimeError(f"The two detector configs differ: {differences}")
    adn = _build(adn_cfg, args.seed)
    adadet.set_depth(adn, SUPER)
    stock = _build(stock_cfg, args.seed + 1)  # other random weights, then overwritten:
    H.copy_weights(adn, stock)                # identical only through the copy
    inputs, _ = H.make_inputs(args.images, args.size, args.seed, device)
    counts = _assert_same_outputs(adn, stock, inputs, args.amp, device)
    log(f"overhead: outputs identical on {len(inputs)} images ({counts} detections)")

    models = {"stock": stock, "adn": adn}
    with torch.no_grad():
        tensors = [adn.preprocess_image([one]).tensor for one in inputs]
    detector_s = {name: [] for name in models}
    backbone_s = {name: [] for name in models}
    rounds = args.warmup + args.repeats
    progress = H.Progress("overhead", rounds, log)
    with torch.no_grad(), H.autocast(device, args.amp):
        for round_index in range(rounds):
            for i, one in enumerate(inputs):
                for name in H.rotated(list(models), round_index + i):
                    model = models[name]
                    t_detector = H.time_call(lambda: model([one]), device)
                    t_backbone = H.time_call(lambda: model.backbone.bottom_up(tensors[i]), device)
                    if round_index >= args.warmup:
                        detector_s[name].append(t_detector)
                        backbone_s[name].append(t_backbone)
            progress.step("(warm-up)" if round_index < args.warmup else "")

    result = {
        "model": f"Mask R-CNN R{args.depth}-FPN, random init, eval; ADN at {SUPER}",
        "stock_config": str(H.stock_config_path().name),
        "input_size": list(args.size),
        "outputs_identical": True,
        "detections_per_image": counts,
        "target_ratio": OVERHEAD_TARGET,
    }
    for part, samples in (("detector", detector_s), ("backbone", backbone_s)):
        stats = {name: H.summarize(samples[name]) for name in models}
        r = H.ratio(stats["adn"]["median_ms"], stats["stock"]["median_ms"])
        result[part] = {**stats, "ratio": r, "within_target": r <= OVERHEAD_TARGET}
    return result


def overhead_table(result: Dict) -> str:
    rows = [
        [part, f"{result[part]['stock']['median_ms']:.2f} / {result[part]['stock']['p90_ms']:.2f}",
         f"{result[part]['adn']['median_ms']:.2f} / {result[part]['adn']['p90_ms']:.2f}",
         f"{result[part]['ratio']:.3f}", "yes" if result[part]["within_target"] else "NO"]
        for part in ("detector", "backbone")
    ]
    headers = ["part", "stock ms\nmedian / p90", "ADN FFFF ms\nmedian / p90", "ratio\nADN/stock",
               f"<= {result['target_ratio']}"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# --------------------------------------------------------------------------- 3. switching


def bench_switching(args, device) -> Dict:
    """Microseconds per depth switch of a built Mask R-CNN, cycling through all 16
    settings, timed in blocks of 100 switches; the operations interleave block by block."""
    settings = adadet.all_depths()
    block = 100
    num_blocks = max(1, args.switches // block)
    result = {"switches_per_operation": num_blocks * block, "block": block, "models": []}
    for resnet_depth in args.switch_models:
        model = _build(_cfg(args, device, resnet_depth=resnet_depth), args.seed).eval()
        bottom_up = model.backbone.bottom_up

        def using(setting, model=model):
            with adadet.using_depth(model, setting):
                pass

        operations = {
            "backbone.set_depth(s)": bottom_up.set_depth,
            "adadet.set_depth(model, s)": lambda s, model=model: adadet.set_depth(model, s),
            "with adadet.using_depth(model, s)": using,
        }
        per_switch = {name: [] for name in operations}
        for block_index in range(-1, num_blocks):  # block -1: warm-up
            for name in H.rotated(list(operations), block_index):
                op = operations[name]
                seconds = H.time_call(
                    lambda: [op(settings[k % len(settings)]) for k in range(block)],
                    torch.device("cpu"))  # switching is host-side only: nothing to sync
                if block_index >= 0:
                    per_switch[name].append(seconds / block)
        adadet.set_depth(model, "TFTF")  # the switches did switch
        if adadet.get_depth(model) != "TFTF" or bottom_up.skip_flags != (True, False, True, False):
            raise AssertionError(f"set_depth('TFTF') left the model at {bottom_up.depth}")
        entry = {
            "resnet_depth": resnet_depth,
            "modules": sum(1 for _ in model.modules()),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "blocks_per_stage": [len(stage) for stage in bottom_up.stages],
            "operations": {},
        }
        for name, samples in per_switch.items():
            entry["operations"][name] = H.summarize(samples, "us")
        result["models"].append(entry)
        log(f"switch: R-{resnet_depth} done")
    return result


def switching_table(result: Dict) -> str:
    rows = [
        [f"R-{m['resnet_depth']}", m["modules"], f"{m['params_m']:.1f}", name,
         f"{op['median_us']:.2f}", f"{op['p90_us']:.2f}"]
        for m in result["models"] for name, op in m["operations"].items()
    ]
    headers = ["model", "modules", "params M", "operation", "us/switch\nmedian", "p90"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# --------------------------------------------------------------------------- 4. training


def _train_step(loss_fn, model, device, amp):
    """One iteration as ADNTrainStep / SimpleTrainer run it, minus data loading and metric
    logging: losses -> zero_grad -> backward -> optimizer step. Learning rate 0: the
    weights stay fixed, so every timed iteration does the same work (same proposals, same
    mask-head load) while the optimizer still does all its arithmetic."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")

    def step():
        with H.autocast(device, amp):
            total = loss_fn()
        optimizer.zero_grad()
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


#: The paper's students (the base-net alone): the "adn" iteration, whose ratio to a stock
#: iteration is the benchmark's figure, and what the other schemes are compared with.
PAPER_SCHEME = (["TTTT"], 1, [])
#: The training schemes timed besides it: name -> (the students drawn from, how many per
#: iteration, the students always there). The study's ``random_subnets``,
#: ``three_students`` and ``sandwich`` (adadet's CPU recipe) recipes (tools/study.py).
_SUBNETS = [d for d in adadet.all_depths(4) if d != SUPER]
TRAINING_SCHEMES = {
    "random_subnet": (_SUBNETS, 1, []),
    "three_students": (_SUBNETS, 3, []),
    "sandwich": (mixed_depths(4), 1, ["TTTT"]),
}


def _distillation_step(cfg, args, device, batch, scheme):
    """(detector, train step) of one self-distillation iteration with ``scheme``'s students
    (:data:`PAPER_SCHEME` or a value of :data:`TRAINING_SCHEMES`)."""
    subnets, num_students, always = scheme
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ADN.DISTILL.SUBNETS = list(subnets)
    cfg.MODEL.ADN.DISTILL.NUM_STUDENTS = num_students
    cfg.MODEL.ADN.DISTILL.ALWAYS_STUDENTS = list(always)
    detector = _build(cfg, args.seed, train=True)
    distill = SelfDistillationModel.from_config(cfg, detector).train()
    calls = {"n": 0}

    def loss():
        calls["n"] += 1  # a new iteration: random schemes draw other students
        return sum(distill(batch, iteration=calls["n"]).values())  # the weighted terms

    return detector, distill, _train_step(loss, detector, device, args.amp)


def bench_training(args, device) -> Dict:
    """One self-distillation iteration (super-net + sub-net forward, one backward, one
    step) against one stock iteration, on the same batch, interleaved; and the other
    training schemes (:data:`TRAINING_SCHEMES`) in the same rounds."""
    adn_cfg = _cfg(args, device)
    stock_cfg = _cfg(args, device, stock=True)
    _, batch = H.make_inputs(args.train_batch, args.size, args.seed, device)
    adn, distill, adn_step = _distillation_step(adn_cfg, args, device, batch, PAPER_SCHEME)
    stock = _build(stock_cfg, args.seed + 1, train=True)
    H.copy_weights(adn, stock)
    steps = {
        "stock": _train_step(lambda: sum(stock(batch).values()), stock, device, args.amp),
        "adn": adn_step,
    }
    models = {"stock": stock, "adn": adn}
    for name, scheme in TRAINING_SCHEMES.items():
        models[name], _, steps[name] = _distillation_step(adn_cfg, args, device, batch, scheme)
    cpu_memory = H.CpuPeakMemory()
    seconds = {name: [] for name in steps}
    peak_mib = {name: [] for name in steps}
    saved = {}
    rounds = args.warmup + args.train_repeats
    progress = H.Progress("train", rounds, log)
    with EventStorage(0):  # Detectron2 models log training statistics to it
        for name, step in steps.items():  # untimed: also the first (allocating) step
            saved[name] = H.saved_activation_mib(step, models[name])
        for round_index in range(rounds):
            for name in H.rotated(list(steps), round_index):
                t, peak = H.measure_step(steps[name], device, cpu_memory)
                if round_index >= args.warmup:
                    seconds[name].append(t)
                    if peak is not None:
                        peak_mib[name].append(peak)
            progress.step("(warm-up)" if round_index < args.warmup else "")

    if device.type == "cuda":
        memory_kind = "torch.cuda.max_memory_allocated during the step minus allocated before"
    elif cpu_memory.available:
        memory_kind = ("peak RSS growth during the step (Linux VmHWM reset via "
                       "/proc/self/clear_refs, after malloc_trim)")
    else:
        memory_kind = "unavailable on this platform"
    result = {
        "model": f"Mask R-CNN R{args.depth}-FPN, random init, train",
        "batch_images": args.train_batch,
        "input_size": list(args.size),
        "student": list(distill.options.subnets),
        "memory_measure": memory_kind,
        "target_time_ratio": TRAIN_TIME_TARGET,
    }
    for name in steps:
        result[name] = {
            **H.summarize(seconds[name], "s"),
            "peak_mib_median": float(np.median(peak_mib[name])) if peak_mib[name] else None,
            "saved_activations_mib": saved[name],
        }
    result["time_ratio"] = H.ratio(result["adn"]["median_s"], result["stock"]["median_s"])
    result["scheme_time_ratios"] = {  # each scheme against the paper's super + base
        name: H.ratio(result[name]["median_s"], result["adn"]["median_s"]) for name in TRAINING_SCHEMES
    }
    result["peak_memory_ratio"] = H.ratio(
        result["adn"]["peak_mib_median"], result["stock"]["peak_mib_median"])
    result["saved_activations_ratio"] = H.ratio(
        result["adn"]["saved_activations_mib"], result["stock"]["saved_activations_mib"])
    result["within_target"] = result["time_ratio"] <= TRAIN_TIME_TARGET
    return result


def training_table(result: Dict) -> str:
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    rows = [
        [name, f"{result[name]['median_s']:.3f} / {result[name]['p90_s']:.3f}",
         fmt(result[name]["peak_mib_median"], ".0f"), f"{result[name]['saved_activations_mib']:.0f}"]
        for name in ("stock", "adn", *TRAINING_SCHEMES)
    ]
    rows.append(["ratio adn/stock", f"{result['time_ratio']:.3f} "
                 f"({'<=' if result['within_target'] else '>'} {result['target_time_ratio']})",
                 fmt(result["peak_memory_ratio"], ".3f"), f"{result['saved_activations_ratio']:.3f}"])
    for name, time_ratio in result["scheme_time_ratios"].items():
        rows.append([f"ratio {name}/adn", f"{time_ratio:.3f}", "",
                     f"{result[name]['saved_activations_mib'] / result['adn']['saved_activations_mib']:.3f}"])
    headers = ["iteration", "s/iter\nmedian / p90", "peak MiB\n(median)", "saved for\nbackward MiB"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# --------------------------------------------------------------------------- main

SECTION_FUNCTIONS = {
    "latency": (bench_latency, latency_table, "Inference latency per depth (batch 1)"),
    "overhead": (bench_overhead, overhead_table, "Overhead of ADN at FFFF vs stock Detectron2"),
    "switch": (bench_switching, switching_table, "Cost of switching depth on a built model"),
    "train": (bench_training, training_table, "One training iteration: distillation vs stock"),
}


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest
    info = H.describe_device(device)
    suffix = ("-amp" if args.amp else "") + ("-quick" if args.quick else "")
    output = Path(args.output) if args.output else (
        Path(__file__).resolve().parent / "results" / f"{info['slug']}{suffix}.json")
    log(f"device: {info['name']}; sections {args.sections}; input {args.size[0]}x{args.size[1]}"
        f", R-{args.depth}, {args.images} images, {args.repeats} rounds (+{args.warmup} warm-up)"
        f", amp={args.amp}")

    report = {
        "device": info,
        "settings": {
            "input_size": list(args.size), "images": args.images, "seed": args.seed,
            "config_file": args.config_file, "resnet_depth": args.depth, "depths": args.depths, "detections": args.detections,
            "detector_flops": args.detector_flops,
            "cfg_overrides": list(args.cfg_overrides), "repeats": args.repeats,
            "warmup": args.warmup, "amp": args.amp, "quick": args.quick,
            "train_batch": args.train_batch, "train_repeats": args.train_repeats,
            "cudnn_benchmark": device.type == "cuda",
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if argv is None
            else " ".join(["run.py"] + list(argv)),
        },
    }
    print(f"adadet benchmarks on {info['name']} (torch {info['torch']}, amp={args.amp})")
    for section in args.sections:
        function, table, title = SECTION_FUNCTIONS[section]
        log(f"--- {section} ---")
        report[section] = function(args, device)
        print(f"\n## {title} [{info['name']}]\n{table(report[section])}", flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")
    return report


if __name__ == "__main__":
    main()
