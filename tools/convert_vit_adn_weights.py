#!/usr/bin/env python
"""Convert an official ViT-ADN (or plain torchvision ViT) ImageNet checkpoint into a
Detectron2 ``.pkl`` that ``MODEL.WEIGHTS`` loads into a ViT-ADN model.

Usage:
  python tools/convert_vit_adn_weights.py INPUT.pth OUTPUT.pkl [--ema] [--trust]
      [--config-file configs/mask_rcnn_ada_vit_b.yaml] [--skip-norm-init copy|error]

INPUT holds torchvision's ``vit_*_16`` names (official ViT-ADN checkpoints add
``ln_1_skip`` / ``ln_2_skip`` in the mandatory blocks); the output is ``{"model": {ViT-ADN
name: numpy array}, "__author__": ..., "matching_heuristics": True, ...}``. A checkpoint
without skip norms gets each one as a copy of its main norm (``--skip-norm-init copy``, the
default) or is refused (``error``). With ``--config-file`` the checkpoint must fit that
config's ViT (size, pretraining resolution, mandatory blocks); nothing is written otherwise.

INPUT is read as by tools/convert_adn_weights.py (``weights_only=True``, official ADN
training checkpoints included; --trust only for other Python objects, from a trusted source).
"""
import argparse
import os
import pickle
import sys

from adadet.checkpoint.reading import (
    EMA_ENTRY,
    SKIP_NORM_INIT_POLICIES,
    CheckpointError,
    read_weights,
)
from adadet.checkpoint.resnet_keys import numpy_state_dict
from adadet.checkpoint.vit_keys import ADN_VIT, ViTStructure, convert_vit_checkpoint


def expected_from_config(config_file: str, opts=()):
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


def convert(
    input_path: str,
    output_path: str,
    *,
    trust: bool = False,
    config_file: str = "",
    skip_norm_init: str = "copy",
    ema: bool = False,
) -> dict:
    state_dict, note = read_weights(input_path, trust=trust, ema=ema)
    if note:
        print(note)
    expected, num_mandatory = (None, None)
    if config_file:
        expected, num_mandatory = expected_from_config(config_file)
    checkpoint = convert_vit_checkpoint(
        state_dict,
        source=input_path,
        expected=expected,
        num_mandatory_per_group=num_mandatory,
        skip_norm_init=skip_norm_init,
    )
    checkpoint["model"] = numpy_state_dict(checkpoint["model"])
    checkpoint["converted_from"] = os.path.basename(input_path)
    checkpoint["ema_weights"] = ema
    with open(output_path, "wb") as f:
        pickle.dump(checkpoint, f)

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", metavar="INPUT.pth")
    parser.add_argument("output", metavar="OUTPUT.pkl")
    parser.add_argument("--trust", action="store_true",
                        help="allow Python objects in INPUT (torch.load weights_only=False)")
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="refuse weights that do not fit this config's ViT-ADN")
    parser.add_argument("--skip-norm-init", choices=SKIP_NORM_INIT_POLICIES, default="copy",
                        help="what to do when INPUT has no skip norms (default: copy)")
    parser.add_argument("--ema", action="store_true",
                        help=f"convert the EMA weights ('{EMA_ENTRY}') instead of 'model'")
    args = parser.parse_args(argv)
    try:
        convert(
            args.input,
            args.output,
            trust=args.trust,
            config_file=args.config_file,
            skip_norm_init=args.skip_norm_init,
            ema=args.ema,
        )
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
