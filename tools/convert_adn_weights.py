#!/usr/bin/env python
"""Convert an official ADN (or plain torchvision) ImageNet ResNet checkpoint into a
Detectron2 ``.pkl`` that ``MODEL.WEIGHTS`` loads.

Usage:
  python tools/convert_adn_weights.py INPUT.pth OUTPUT.pkl [--ema] [--trust]

--ema converts the ``model_ema`` entry (the EMA weights of a ``--model-ema`` run, those of
the official accuracies) instead of ``model``.

The output is ``{"model": {Detectron2 name: numpy array}, "__author__": "adadet",
"matching_heuristics": True, ...}``; skip norms ``layer*.*.bn*_skip`` become
``res*.*.conv*.norm_skip``. Converting is optional: adadet's checkpointer also reads such
checkpoints directly; a ``.pkl`` is smaller (no optimizer state) and needs no
``--trust`` when the original holds more than tensors.

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

from adadet.checkpoint.reading import (
    EMA_ENTRY,
    CheckpointError,
    CheckpointFormatError,
    read_weights,
)
from adadet.checkpoint.resnet_keys import (
    ADN,
    TORCHVISION,
    convert_torchvision_checkpoint,
    detect_layout,
    mandatory_blocks_from_keys,
    numpy_state_dict,
    resnet_structure,
    torchvision_config_yaml,
)
from adadet.checkpoint.vit_keys import detect_vit_layout


def convert(input_path: str, output_path: str, *, trust: bool = False, ema: bool = False) -> None:
    if input_path.endswith(".pkl"):  # torch.load would misreport these as unsafe files
        raise CheckpointFormatError(
            f"'{input_path}' is a pickle, the format of Detectron2 / MSRA checkpoints: they "
            "need no conversion, set MODEL.WEIGHTS to the file directly."
        )
    state_dict, note = read_weights(input_path, trust=trust, ema=ema)
    if note:
        print(note)
    layout = detect_layout(state_dict)
    if detect_vit_layout(state_dict):
        raise CheckpointFormatError(
            f"'{input_path}' holds ViT weights (torchvision's vit_*_16 layout: conv_proj, "
            "encoder.layers), and this converter is for ResNets. Fix: convert it with "
            f"`python tools/convert_vit_adn_weights.py {input_path} {output_path}` (or set "
            "MODEL.WEIGHTS of a ViT-ADN config to the file directly). Nothing was written."
        )
    if layout not in (ADN, TORCHVISION):
        raise CheckpointFormatError(
            f"'{input_path}' is not a torchvision-layout ResNet (conv1, bn1, layer1-4, fc; "
            "the official ADN checkpoints add bn*_skip). Detectron2, MSRA and adadet "
            "checkpoints need no conversion: set MODEL.WEIGHTS to the file directly."
        )
    # The checkpointer's own conversion, so that a .pkl loads as the .pth would.
    checkpoint = convert_torchvision_checkpoint(state_dict, input_path)
    dropped = checkpoint.pop("dropped_keys")
    model = numpy_state_dict(checkpoint["model"])
    with open(output_path, "wb") as f:
        pickle.dump(
            dict(
                checkpoint,
                model=model,
                __author__="adadet",
                converted_from=os.path.basename(input_path),
                ema_weights=ema,
            ),
            f,
        )

    network = resnet_structure(model)
    kind = "official ADN" if layout == ADN else "torchvision"
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert an official ADN or torchvision ResNet checkpoint to a "
        "Detectron2 .pkl for MODEL.WEIGHTS."
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
    args = parser.parse_args(argv)
    try:
        convert(args.input, args.output, trust=args.trust, ema=args.ema)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
