"""Where the log-level SQL runs. `duckdb` (default): embedded, out-of-core, over the local lake
(`pipelines.runner`). `spark`: Apache Spark through PySpark (`pipelines.engines.spark`, and
`pipelines.engines.spark_als` for the recommender's MLlib ALS: the only modules that import
pyspark), for a lake larger than one machine. Both run the same SQL text, rendered for their
dialect (`behavior.sql_dialect`).
"""

ENGINES = ("duckdb", "spark")
