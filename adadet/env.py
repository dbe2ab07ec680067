"""Report the environment adadet runs in: ``python -m adadet.env``.

Tells which detectron2 is in use (version, location, compiled ops or adadet's
compatibility stand-in), the torch/torchvision versions and the device.
"""
import importlib.util
import platform
import sys
from typing import List, Tuple


def detectron2_mode() -> str:
    """'compiled' (detectron2 built with its ops), 'compat' (adadet's stand-in) or 'absent'."""
    if importlib.util.find_spec("detectron2") is None:
        return "absent"
    spec = importlib.util.find_spec("detectron2._C")
    if spec is None:
        return "absent"
    return "compat" if spec.origin.endswith(".py") else "compiled"


def has_compiled_ops() -> bool:
    return detectron2_mode() == "compiled"


def collect_env_info() -> List[Tuple[str, str]]:
    import torch
    import torchvision

    rows = [("Python", sys.version.split()[0] + " " + platform.platform())]
    mode = detectron2_mode()
    if mode == "absent":
        rows.append(("detectron2", "not installed: run `make test` or dev/setup_env.sh"))
    else:
        import detectron2

        ops = {
            "compiled": "compiled ops (detectron2._C at {})",
            "compat": "compatibility mode: no compiled ops, detectron2._C is adadet's stand-in "
            "({}); deformable conv, rotated boxes and the C++ COCOeval are unavailable",
        }[mode].format(importlib.util.find_spec("detectron2._C").origin)
        rows.append(("detectron2", f"{detectron2.__version__} at {detectron2.__path__[0]}"))
        rows.append(("detectron2 ops", ops))
    rows.append(("torch", f"{torch.__version__} at {torch.__path__[0]}"))
    rows.append(("torchvision", torchvision.__version__))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        device = f"cuda ({names})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads; no GPU visible)"
    rows.append(("device", device))
    import adadet

    rows.append(("adadet", f"{adadet.__version__} at {adadet.__path__[0]}"))
    return rows


def main() -> None:
    rows = collect_env_info()
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
