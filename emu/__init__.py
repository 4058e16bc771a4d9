"""pyemu: a full-system x86 PC emulator in Python."""

import os

# numpy serves pyemu's page comparisons, never BLAS; OpenBLAS's worker threads, started
# at import, would only spin beside the machine thread on the host's few cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.2.0"
