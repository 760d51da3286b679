"""mgctag: tag a local music library with genres by listening to it."""

import os

# PyTorch's OpenMP threads spin while they wait for each other; on a small, busy machine that
# burns the cores the decoder needs (measured: tools/bench/musicnn.py). Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.3.0"
