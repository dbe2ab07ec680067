#!/usr/bin/env python
"""Convert an official ADN (or plain torchvision) ImageNet checkpoint, ResNet or ViT, into a
Detectron2 ``.pkl`` that ``MODEL.WEIGHTS`` loads.

Usage:
  python tools/convert_adn_weights.py INPUT.pth OUTPUT.pkl [--ema] [--trust]
      [--skip-norm-init copy|error] [--config-file configs/mask_rcnn_ada_vit_b.yaml]

The network is told by INPUT's keys, never by its name:

* a ResNet (torchvision's ``conv1``, ``bn1``, ``layer1-4``, ``fc``; the official ADN
  checkpoints add ``layer*.*.bn*_skip``) gets Detectron2's names: skip norms become
  ``res*.*.conv*.norm_skip``; without them, adadet's checkpointer starts each skip norm as
  a copy of its main norm when it loads the ``.pkl``.
* a ViT (torchvision's ``vit_*_16``; the official ViT-ADN checkpoints add ``ln_1_skip`` /
  ``ln_2_skip`` in the mandatory blocks) gets ViT-ADN's names; without skip norms, each
  one is written as a copy of its main norm. With ``--config-file`` it must fit that
  config's ViT (size, pretraining resolution, mandatory blocks).

The output is ``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics":
True, ...}``. ``--skip-norm-init error`` refuses weights without skip norms; ``--ema``
converts the ``model_ema`` entry (the EMA weights of a ``--model-ema`` run, those of the
official accuracies) instead of ``model``. Nothing is written when a check fails.
Converting is optional: adadet's checkpointer also reads such checkpoints directly; a
``.pkl`` is smaller (no optimizer state) and needs no ``--trust`` when the original holds
more than tensors.

INPUT is read with ``torch.load(weights_only=True)``, which also accepts the
``argparse.Namespace`` of training arguments in the official ADN checkpoints
(``{"model", "optimizer", "lr_scheduler", "epoch", "args"}``): those need no flag.
--trust loads INPUT with ``torch.load(weights_only=False)``, which runs any Python code the
file holds: only for files from a trusted source, and only for other Python objects.
"""

import argparse
import os
import pickle
import sys

from adadet.checkpoint import (
    SKIP_NORM_INIT_POLICIES,
    CheckpointError,
    CheckpointFormatError,
    SkipNormsMissingError,
)
from adadet.checkpoint.errors import check_skip_norm_init
from adadet.checkpoint.key_rules import numpy_state_dict
from adadet.checkpoint.reading import EMA_ENTRY, read_weights
from adadet.checkpoint.resnet_keys import (
    ADN,
    TORCHVISION,
    convert_torchvision_checkpoint,
    detect_layout,
    mandatory_blocks_from_keys,
    resnet_structure,
    torchvision_config_yaml,
)
from adadet.checkpoint.vit_keys import (
    ADN_VIT,
    ViTStructure,
    convert_vit_checkpoint,
    detect_vit_layout,
)

#: How the messages name this tool.
CONVERTER = "tools/convert_adn_weights.py"


class UsageError(ValueError):
    """An option that does not apply to the weights INPUT holds."""


def convert(
    input_path: str,
    output_path: str,
    *,
    trust: bool = False,
    ema: bool = False,
    skip_norm_init: str = "copy",
    config_file: str = "",
) -> dict:
    """Write the ``.pkl`` of ``input_path``'s ResNet or ViT weights; returns what it holds."""
    check_skip_norm_init(skip_norm_init)
    if input_path.endswith(".pkl"):  # torch.load would misreport these as unsafe files
        raise CheckpointFormatError(
            f"'{input_path}' is a pickle, the format of Detectron2 / MSRA checkpoints: they "
            "need no conversion, set MODEL.WEIGHTS to the file directly."
        )
    state_dict, note = read_weights(input_path, converter=CONVERTER, trust=trust, ema=ema)
    if note:
        print(note)
    if detect_vit_layout(state_dict):
        return convert_vit(
            state_dict,
            input_path,
            output_path,
            ema=ema,
            skip_norm_init=skip_norm_init,
            config_file=config_file,
        )
    if detect_layout(state_dict) in (ADN, TORCHVISION):
        if config_file:
            raise UsageError(
                f"--config-file checks ViT weights against a config, but '{input_path}' holds "
                "ResNet weights (adadet's checkpointer checks those against the model when "
                "MODEL.WEIGHTS loads them). Fix: leave out --config-file. Nothing was written."
            )
        return convert_resnet(
            state_dict, input_path, output_path, ema=ema, skip_norm_init=skip_norm_init
        )
    raise CheckpointFormatError(
        f"'{input_path}' is neither a torchvision-layout ResNet (conv1, bn1, layer1-4, fc; the "
        "official ADN checkpoints add bn*_skip) nor a torchvision-layout ViT (conv_proj, "
        "encoder.layers; the official ViT-ADN checkpoints add ln_*_skip). Detectron2, MSRA "
        "and adadet checkpoints need no conversion: set MODEL.WEIGHTS to the file directly."
    )


def _write(checkpoint: dict, input_path: str, output_path: str, ema: bool) -> dict:
    checkpoint = dict(
        checkpoint,
        model=numpy_state_dict(checkpoint["model"]),
        converted_from=os.path.basename(input_path),
        ema_weights=ema,
    )
    with open(output_path, "wb") as f:
        pickle.dump(checkpoint, f)
    return checkpoint


def convert_resnet(
    state_dict, input_path: str, output_path: str, *, ema: bool, skip_norm_init: str
) -> dict:
    # The checkpointer's own conversion, so that a .pkl loads as the .pth would.
    checkpoint = convert_torchvision_checkpoint(state_dict, input_path)
    if not checkpoint["num_skip_norms"] and skip_norm_init == "error":
        raise SkipNormsMissingError(
            f"'{input_path}' has no skip norms (bn*_skip): it is an ordinary torchvision "
            "ResNet, and --skip-norm-init is 'error'. Fix: use an official ADN checkpoint, or "
            "let adadet's checkpointer start each skip norm as a copy of its main norm "
            "(--skip-norm-init copy). Nothing was written."
        )
    dropped = checkpoint.pop("dropped_keys")
    checkpoint = _write(dict(checkpoint, __author__="adadet"), input_path, output_path, ema)
    model = checkpoint["model"]

    network = resnet_structure(model)
    kind = "official ADN" if detect_layout(state_dict) == ADN else "torchvision"
    weights = f"the EMA weights ('{EMA_ENTRY}')" if ema else "the weights"
    print(f"Read {weights} of '{input_path}': {kind} {network}, torchvision layout.")
    print(
        f"Converted {len(model)} tensors to Detectron2 names"
        + (f"; dropped the classifier ({', '.join(dropped)})." if dropped else ".")
    )
    mandatory = None
    if checkpoint["num_skip_norms"]:
        mandatory = mandatory_blocks_from_keys(model)
        print(
            f"Skip norms: {checkpoint['num_skip_norms']} found (bn*_skip -> conv*.norm_skip); "
            f"mandatory blocks per stage {mandatory}."
        )
    else:
        print(
            "Skip norms: none found; adadet's checkpointer will initialise every skip norm "
            "as a copy of its main norm (MODEL.ADN.SKIP_NORM_INIT: copy)."
        )
    print(f"Wrote '{output_path}'.")
    print(
        "\nThe weights are torchvision-style (stride in the 3x3 conv, RGB input, ImageNet "
        "mean/std); use them with:\n"
    )
    print(
        torchvision_config_yaml(
            weights=output_path,
            depth=network.depth if network else None,
            basic_blocks=bool(network and not network.bottleneck),
            num_mandatory_blocks=mandatory,
        ),
        end="",
    )
    return checkpoint


def vit_expected_from_config(config_file: str, opts=()):
    """(structure, mandatory blocks per group) of the ViT a config builds."""
    from detectron2.config import get_cfg

    from adadet import add_adn_config

    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    v = cfg.MODEL.VIT_ADN
    structure = ViTStructure(
        embed_dim=v.EMBED_DIM,
        num_blocks=v.NUM_BLOCKS,
        patch_size=v.PATCH_SIZE,
        mlp_dim=int(v.EMBED_DIM * v.MLP_RATIO),
        pretrain_img_size=v.PRETRAIN_IMG_SIZE,
    )
    return structure, list(cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS) or None


def convert_vit(
    state_dict,
    input_path: str,
    output_path: str,
    *,
    ema: bool,
    skip_norm_init: str,
    config_file: str,
) -> dict:
    expected, num_mandatory = (None, None)
    if config_file:
        expected, num_mandatory = vit_expected_from_config(config_file)
    checkpoint = convert_vit_checkpoint(
        state_dict,
        source=input_path,
        expected=expected,
        num_mandatory_per_group=num_mandatory,
        skip_norm_init=skip_norm_init,
    )
    checkpoint = _write(checkpoint, input_path, output_path, ema)

    structure = ViTStructure(**checkpoint["structure"])
    kind = "official ViT-ADN" if checkpoint["layout"] == ADN_VIT else "torchvision ViT"
    print(f"Read '{input_path}': {kind} weights, {structure}.")
    print(f"Converted {len(checkpoint['model'])} tensors to ViT-ADN names.")
    if checkpoint["dropped_keys"]:
        print(f"Dropped (not used by a detector): {', '.join(checkpoint['dropped_keys'])}.")
    mandatory = checkpoint["mandatory_blocks"]
    if checkpoint["num_skip_norms_copied"]:
        print(
            f"No skip norms in the checkpoint: started {checkpoint['num_skip_norms_copied']} "
            f"skip LayerNorms (blocks {mandatory}) as copies of their main norms."
        )
    else:
        print(f"Skip norms (ln_*_skip -> norm*.norm_skip) of the mandatory blocks {mandatory}.")
    print(f"Wrote '{output_path}'. Config for these weights:")
    for line in structure.config_lines():
        print(f"  {line}")
    print(f"  MODEL.WEIGHTS: {output_path}")
    return checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert an official ADN or torchvision ResNet / ViT checkpoint to a "
        "Detectron2 .pkl for MODEL.WEIGHTS (the network is told by the checkpoint's keys)."
    )
    parser.add_argument("input", help="checkpoint saved by torch.save (.pth / .pt)")
    parser.add_argument("output", help="the .pkl to write")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load INPUT with weights_only=False (runs code in the file; trusted files only)",
    )
    parser.add_argument(
        "--ema",
        action="store_true",
        help=f"convert the EMA weights ('{EMA_ENTRY}' of a --model-ema run, those of the "
        "official accuracies) instead of 'model'",
    )
    parser.add_argument(
        "--skip-norm-init",
        choices=SKIP_NORM_INIT_POLICIES,
        default="copy",
        help="what to do when INPUT has no skip norms: start them as copies of the main "
        "norms (default) or refuse INPUT",
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="ViT weights: refuse them unless they fit this config's ViT-ADN",
    )
    args = parser.parse_args(argv)
    try:
        convert(
            args.input,
            args.output,
            trust=args.trust,
            ema=args.ema,
            skip_norm_init=args.skip_norm_init,
            config_file=args.config_file,
        )
    except (CheckpointError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
