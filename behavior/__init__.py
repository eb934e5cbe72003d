"""Consumer behavior analytics: pure domain logic on DataFrames, Arrow tables and arrays.

Nothing in this package reads paths, the environment or the network; the batch pipelines
(`pipelines`) and the HTTP API (`api`) do the I/O and call into it. The one exception is
`behavior.store`: the file formats both of them share.
"""

__version__ = "0.1.0"
