"""`behavior synth`: write generated histories as files that `behavior ingest` reads.

One Parquet file per canonical table (`payments.parquet`, `users.parquet`, ...), the
per-user planted truth as `truth_users.parquet` and the rest of the truth as `truth.json`
(ingest skips files not named after a table).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from behavior.synth import SynthConfig, generate
from behavior.store import atomic


def synth_config(**sizes: int | None) -> SynthConfig:
    """SynthConfig with the given sizes and seed; None keeps SynthConfig's default."""
    return SynthConfig(**{k: v for k, v in sizes.items() if v is not None})


def write_synth(out: Path, *, users: int | None = None, months: int | None = None, seed: int | None = None,
                **overrides) -> dict[str, int]:
    """Generate and write; returns file name -> rows. The folder is replaced as a whole. A size or
    seed left None is SynthConfig's default."""
    data = generate(synth_config(users=users, months=months, seed=seed, **overrides))
    out = out.absolute()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written: dict[str, int] = {}
    for name, frame in data.tables.items():
        fname = ("truth_" + name.removeprefix("_truth_") if name.startswith("_truth_") else name) + ".parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / fname, compression="zstd")
        written[fname] = len(frame)
    atomic.write_json(tmp / "truth.json", data.truth)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return written
