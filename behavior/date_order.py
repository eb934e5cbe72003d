"""Day-first or month-first: decided once per input and date column, from all its values.

A slash or dash date (`05/02/2025`, `13-01-25 10:00`) reads both ways unless one of its first
two numbers is above 12. One cheap aggregate over the column (on the validation engine)
counts the values only day-first (13-31, then 1-12) and those only month-first:

- only day-first ones (and no only month-first one): the whole column is read day-first;
- only month-first ones, or none of either: month-first (the default);
- both: the input is refused (`MixedDateOrderError`), with an example row of each, since any
  order would store some of its dates wrong.

An input is never read in two orders. `--dayfirst` or `--date-format` force the order (no
decision is made).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from behavior import parsing as P
from behavior.errors import InputError
from behavior.schema import ROW, Table


class MixedDateOrderError(InputError):
    """A date column holds dates only valid day-first and dates only valid month-first."""


@dataclass(frozen=True)
class DateOrder:
    dayfirst: frozenset[str] = frozenset()        # canonical columns read day-first
    notes: list[str] = field(default_factory=list)


def order_texts(types: dict[str, pa.DataType], spec: Table, columns: dict[str, str | None],
                na_values: tuple[str, ...], d: Any, texts: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(canonical column, SQL over the source columns) of each text date column to decide: the
    text an order is read from (NULL for dates that start with a year, which tell no order).
    `texts` names columns whose text (`parsing.text` of the source value) a query has computed
    already (canonical column -> its SQL), for the SQL to read instead."""
    todo = [c.name for c in spec.columns if c.type == "timestamp" and columns.get(c.name)
            and (pa.types.is_string(types[columns[c.name]]) or pa.types.is_large_string(types[columns[c.name]]))]
    quote = d.ident[0]
    return [(n, _unless_iso((texts or {}).get(n) or P.text(quote + columns[n].replace(quote, quote * 2) + quote,
                                                             pa.string(), d, na_values), d))
            for n in todo]


def decide_date_order(engine: Any, relation: str, types: dict[str, pa.DataType],
                      value: Callable[[str, int], object], spec: Table, columns: dict[str, str | None],
                      na_values: tuple[str, ...], where: str) -> DateOrder:
    """The order of each text date column of `relation` (a relation on `engine` with source
    columns of `types` and ROW; `value(column, row number)` is a source value, for the
    examples). Raises MixedDateOrderError naming `where`."""
    texts = order_texts(types, spec, columns, na_values, engine.dialect)
    if not texts:
        return DateOrder()
    selected = ", ".join(f"{e} AS c{i}" for i, (_, e) in enumerate(texts))
    return decide_from_texts(engine, f"(SELECT {ROW}, {selected} FROM {relation})", [n for n, _ in texts],
                             value, columns, where)


def decide_from_texts(engine: Any, relation: str, todo: list[str], value: Callable[[str, int], object],
                      columns: dict[str, str | None], where: str, prefix: str = "c") -> DateOrder:
    """`decide_date_order` from `relation`, which holds ROW and the `order_texts` of the columns
    `todo` as `<prefix>0`, `<prefix>1`, ..."""
    flags = []
    for i in range(len(todo)):
        flags += [f"{only_valid_sql(f'{prefix}{i}', dayfirst=True)} AS d{i}",
                  f"{only_valid_sql(f'{prefix}{i}', dayfirst=False)} AS m{i}"]
    aggs = []
    for i in range(len(todo)):
        for name, only in (("day", f"d{i}"), ("month", f"m{i}")):
            aggs += [f"count(CASE WHEN {only} THEN 1 END) AS n_{name}{i}",
                     f"min(CASE WHEN {only} THEN {ROW} END) AS r_{name}{i}"]
    row = engine.arrow(f"SELECT {', '.join(aggs)} FROM (SELECT {ROW}, {', '.join(flags)} FROM {relation} t) f").to_pylist()[0]
    dayfirst, notes = set(), []
    for i, n in enumerate(todo):
        days, months = row[f"n_day{i}"], row[f"n_month{i}"]
        if days and months:
            raise MixedDateOrderError(
                f"{where}: {n} has dates only valid day-first ({_example(value, columns[n], row[f'r_day{i}'])}) "
                f"and dates only valid month-first ({_example(value, columns[n], row[f'r_month{i}'])}), so no one "
                "order reads the file right; nothing of it was stored. Correct the dates, or read them all one way "
                "with --dayfirst or --date-format (the dates that do not fit are then rejected)")
        if days:
            dayfirst.add(n)
            notes.append(f"{n} read day-first: {days:,} of its dates are only valid day-first "
                         f"(e.g. {_example(value, columns[n], row[f'r_day{i}'])}) and none only month-first")
    return DateOrder(frozenset(dayfirst), notes)


def only_valid_sql(t: str, dayfirst: bool) -> str:
    """SQL: whether the text `t` (an `order_texts` text) is a date valid only day-first
    (`dayfirst`) or only month-first; NULL where `t` is."""
    # the first two numbers of a slash or dash date (`13/01/2025 10:00`, `5-2-25`); a split
    # is far cheaper than trying the strptime patterns both ways
    u = f"replace({t}, '-', '/')"
    first, second = (f"TRY_CAST(split_part({u}, '/', {k}) AS INTEGER)" for k in (1, 2))
    if not dayfirst:
        first, second = second, first
    year = f"TRY_CAST(left(split_part({u}, '/', 3), 2) AS INTEGER) IS NOT NULL"
    # a CASE: the splits run only on the texts that are not NULL (an ISO date's is)
    return f"CASE WHEN {t} IS NOT NULL THEN {year} AND {first} BETWEEN 13 AND 31 AND {second} BETWEEN 1 AND 12 END"


def _unless_iso(t: str, d: Any) -> str:
    """The text `t`, NULL when it starts with a year of four digits (1000 or later) and a dash
    (`2024-01-30 ...`, most exports): its first number is not a day or a month, so it is
    neither order's evidence, and the splits below skip it."""
    return f"CASE WHEN {d.starts_with_year.format(t)} THEN NULL ELSE {t} END"


def _example(value: Callable[[str, int], object], column: str, row: int) -> str:
    return f"row {row}: {str(value(column, row)).strip()!r}"
