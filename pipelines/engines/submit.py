"""The `behavior` command as a file for spark-submit, which runs Python files, not console
scripts:

    spark-submit --master yarn --deploy-mode client pipelines/engines/submit.py \\
        --data-dir /srv/behavior run --engine spark

The SparkSession is then made by spark-submit's JVM with its --master and --conf; the engine
reuses it (pipelines/engines/spark.py)."""

from pipelines.cli import main

if __name__ == "__main__":
    main()
