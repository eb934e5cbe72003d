"""A DuckDB engine that keeps the SQL text of every query it answers as Arrow, for tests that
check which relations a stage reads."""

from behavior.sql_dialect import DuckDBEngine


class RecordingEngine(DuckDBEngine):
    def __init__(self, con) -> None:
        super().__init__(con)
        self.sql: list[str] = []

    def arrow(self, sql, params=None):
        self.sql.append(sql)
        return super().arrow(sql, params)
