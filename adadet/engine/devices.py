"""Whether the devices a run asks for are there, checked before any process starts
(Detectron2 would fail later with a bare CUDA assertion in each worker)."""
import sys
from typing import Callable, Optional

__all__ = ["device_problem", "launch_on_devices"]


def device_problem(
    num_gpus: int, device: str, num_cuda: int, set_device: str = "MODEL.DEVICE {}"
) -> Optional[str]:
    """Why ``--num-gpus num_gpus`` with the model on ``device`` cannot run on a machine
    with ``num_cuda`` CUDA GPUs; None when it can. Detectron2's launch starts one process
    per GPU (NCCL, each on its GPU) when --num-gpus > 1, and asserts CUDA in each.

    ``set_device`` writes the override that sets the device: ``"MODEL.DEVICE {}"`` (YACS)
    or ``"train.device={}"`` (LazyConfig)."""
    key = set_device.split("{")[0].rstrip(" =")
    on_cuda = str(device).startswith("cuda")
    gpus = f"{num_cuda} CUDA GPU{'' if num_cuda == 1 else 's'}" + (
        " (torch.cuda.is_available() is False)" if num_cuda == 0 else ""
    )
    on_cpu = set_device.format("cpu")
    cpu_note = (
        "Several processes on CPU are not supported: Detectron2's launch needs one GPU per "
        f"process; on CPU train in one process, --num-gpus 1 {on_cpu}."
    )
    if num_gpus < 1:
        return f"--num-gpus {num_gpus}: give at least 1 (one process per GPU; 1 on CPU)."
    if num_gpus > num_cuda and (num_gpus > 1 or on_cuda):
        fix = f"--num-gpus {max(1, num_cuda)}" if num_cuda else f"--num-gpus 1 {on_cpu}"
        return (
            f"--num-gpus {num_gpus} with {key} {device!r} needs {num_gpus} CUDA "
            f"GPU{'' if num_gpus == 1 else 's'}, and this machine has {gpus}. Fix: {fix}. "
            + (cpu_note if num_gpus > 1 else "")
        ).strip()
    if num_gpus > 1 and not on_cuda:
        return (
            f"--num-gpus {num_gpus} starts {num_gpus} processes, one per GPU, but {key} "
            f"is {device!r}. Fix: {set_device.format('cuda')} (this machine has {gpus}), or "
            f"--num-gpus 1 for one process on {device}. {cpu_note}"
        )
    return None


def launch_on_devices(main: Callable, args, device: str, set_device: str = "MODEL.DEVICE {}"):
    """Detectron2's ``launch(main, args.num_gpus, ...)`` of a train_net-style tool, after
    exiting with the fix when the devices asked for are not there (:func:`device_problem`)."""
    import torch
    from detectron2.engine import launch

    problem = device_problem(args.num_gpus, device, torch.cuda.device_count(), set_device)
    if problem:
        sys.exit(f"error: {problem}")
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
