"""Saves a checkpoint and is SIGKILLed half-way through writing it (run as a script by
test_atomic_save): python checkpoint_killed_writer.py SAVE_DIR NAME FILL_VALUE"""
import io
import os
import signal
import sys

import torch

from adadet.checkpoint import ADNCheckpointer


def die_half_way(data, f):
    buffer = io.BytesIO()
    real_save(data, buffer)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    save_dir, name, fill = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = torch.nn.Linear(64, 64)
    torch.nn.init.constant_(model.weight, fill)
    real_save, torch.save = torch.save, die_half_way
    ADNCheckpointer(model, save_dir).save(name, iteration=int(fill))
    sys.exit("not killed")  # unreachable when the kill works
