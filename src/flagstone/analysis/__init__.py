"""Experiment data in, decisions out: ingestion (DuckDB), the SQL, the analysis run and its renderings."""

import os

# The statistics use BLAS only on tiny matrices (the largest is the 384-node quadrature
# flagstone.stats builds on import): one thread does that in milliseconds, while a pool of
# OpenBLAS threads spinning against DuckDB's (and, on a busy machine, everyone else's)
# took 2.5 s at load 4. Set before numpy loads; a value the user set is kept.
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
