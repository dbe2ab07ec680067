import os

import torch

# The suite runs on 2 cores; more threads than cores only slows it down.
torch.set_num_threads(min(2, os.cpu_count() or 1))
