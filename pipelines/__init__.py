"""Batch pipelines: read the lake, call behavior, write artifacts; the runner and the CLI."""
