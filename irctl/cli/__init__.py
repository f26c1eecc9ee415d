"""irctl's command line. Importing it sets one process-wide default before torch loads.

``OMP_WAIT_POLICY=PASSIVE`` unless the user set the variable: torch's CPU kernels run on an
OpenMP pool (libgomp) of one thread per core, and under libgomp's default policy a pool thread
that waits at a barrier spins on its core. When other work holds a core, the pool thread that
should run there is late, and its partners' spinning takes the time it needs: measured here
(tools/measure_threads.py, results/threads-cpu.md), a restore with 2 threads on 2 cores with one
core busy took 83 s with the default policy, 20 s with PASSIVE, 27 s with one thread. libgomp
reads the variable once, when torch loads it, so it is set here, before any irctl module
imports torch (the ``irctl`` script and ``python -m irctl`` both import this package first).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
