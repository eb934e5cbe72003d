"""Where the log-level SQL runs. `duckdb` (default): embedded, out-of-core, over the local lake
(`pipelines.runner`). `spark`: Apache Spark through PySpark (`pipelines.engines.spark`, and
`pipelines.engines.spark_als` for the recommender's MLlib ALS: the only modules that import
pyspark), for a lake larger than one machine. Both run the same SQL text, rendered for their
dialect (`behavior.sql_dialect`).
"""

ENGINES = ("duckdb", "spark")


def duckdb_connection(settings, home):
    """An in-memory DuckDB connection with the `[engine]` settings (a
    `pipelines.config.EngineConfig`): its threads and memory cap, spilling to <data home>/tmp,
    in UTC. Ingest and the run both use it, so neither takes DuckDB's default of 80% of RAM."""
    import duckdb

    from behavior.sql_dialect import DUCKDB

    con = duckdb.connect()
    con.execute(f"SET temp_directory = {DUCKDB.literal(str(home.root / 'tmp'))}")   # (a quote in the path)
    con.execute("SET TimeZone = 'UTC'")
    if settings.duckdb_threads:
        con.execute(f"SET threads = {int(settings.duckdb_threads)}")
    con.execute(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    return con
