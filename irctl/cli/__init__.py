"""irctl's command line. Importing it sets one process-wide default before torch loads.

``OMP_WAIT_POLICY=PASSIVE`` unless the user set the variable: torch's CPU kernels run on an
OpenMP pool (libgomp) of one thread per core, and under libgomp's default policy a pool thread
that waits at a barrier spins on its core. When other work holds a core, the pool thread that
should run there is late, and its partners' spinning takes the time it needs. Measured here
(tools/measure_threads.py, results/threads-cpu.md; 2 cores, one held by a busy loop): a restore
with 2 threads took 33 s with the default policy and 22 s with PASSIVE, one thread 19–21 s; on
the idle machine 2 threads took 14–15 s either way. libgomp
reads the variable once, when torch loads it, so it is set here, before any irctl module
imports torch (the ``irctl`` script and ``python -m irctl`` both import this package first).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
