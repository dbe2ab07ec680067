"""Runs tools/train_net.py with the tiny test datasets registered first (the script itself
registers only Detectron2's and adadet's datasets): python engine_run_train_net.py ARGS...

ADADET_TEST_PAUSE_AT_ITER=N makes the run sleep for a minute before iteration N, so that
a test can kill it there (after the checkpoints of the earlier iterations).
"""
import os
import runpy
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from engine_tiny_data import register_tiny  # noqa: E402

if __name__ == "__main__":
    register_tiny(os.environ["ADADET_TEST_TINY_ROOT"])
    pause_at = int(os.environ.get("ADADET_TEST_PAUSE_AT_ITER", -1))
    if pause_at >= 0:
        from adadet.engine import ADNTrainer

        run_step = ADNTrainer.run_step

        def pausing_run_step(self):
            if self.iter == pause_at:
                time.sleep(60)
            run_step(self)

        ADNTrainer.run_step = pausing_run_step
    script = os.path.join(HERE, "..", "..", "tools", "train_net.py")
    sys.argv = [script] + sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
