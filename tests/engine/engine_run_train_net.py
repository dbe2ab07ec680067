"""Runs tools/train_net.py with the tiny test datasets registered first (the script itself
registers only Detectron2's and adadet's datasets): python engine_run_train_net.py ARGS..."""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from engine_tiny_data import register_tiny  # noqa: E402

if __name__ == "__main__":
    register_tiny(os.environ["ADADET_TEST_TINY_ROOT"])
    script = os.path.join(HERE, "..", "..", "tools", "train_net.py")
    sys.argv = [script] + sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
