"""Batch pipelines: read the lake, call behavior, write artifacts; the runner and the CLI."""

import os

# OpenMP threads (scikit-learn's boosting) spin while they wait by default; when another
# process uses the other core they fight it and the churn stage ran 3.5x slower (215 s vs
# 61 s on 30k customers with a busy machine). Passive waiting costs nothing on a quiet one.
# Set before any OpenMP runtime loads; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
