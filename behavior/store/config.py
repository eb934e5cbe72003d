"""The one configuration of the product: every setting declared once, with its type, default,
TOML key and environment variable, and read once by `load_config(path, env)`.

Each section is a frozen dataclass; each field is declared with `setting(...)`. Where a value
comes from, lowest first: its default here, the TOML file (`behavior run --config FILE`,
`[section] key = value`), its environment variable, and last the command-line options that
name it (`--data-dir`, `--engine`). A key the file does not know, a value of the wrong type or
outside its range is a `ConfigError` naming the file, the section and the key (or the
variable), which the CLI turns into exit code 2. The sections `home` and `api` are settings of
a process, not of a run: they come from the environment only.

docs/configuration.md lists every setting with its default (`reference_table()`; a test keeps
the page and this module in step). Every horizon is in days.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from behavior.errors import InputError

DATA_DIR_ENV = "BEHAVIOR_DATA_DIR"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(InputError):
    """A configuration file or environment variable holds a key or value that cannot be used."""


def setting(default: Any, doc: str, *, env: str | None = None, minimum: float | None = None,
            above: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its documentation and its checks: `minimum` (value >= it), `above`
    (value > it), `choices` (one of them)."""
    meta = {"doc": doc, "env": env, "minimum": minimum, "above": above, "choices": choices}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def _kind(f: Field) -> type:
    return type(_default(f))


def _checked(f: Field, value: Any, where: str) -> Any:
    """`value` for field `f`, or a ConfigError that starts with `where` and says what to write."""
    want = _kind(f)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
        raise ConfigError(f"{where} = {value!r} should be a {want.__name__} (default {_default(f)!r})")
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{where} = {value!r}: use one of {', '.join(repr(c) for c in meta['choices'])}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ConfigError(f"{where} = {value!r} must be at least {meta['minimum']}")
    if meta["above"] is not None and value <= meta["above"]:
        what = "positive" if meta["above"] == 0 else f"above {meta['above']}"
        raise ConfigError(f"{where} = {value!r} must be {what}")
    return value


class _Section:
    """Checks every field on construction, so a section built in code is held to the same rules."""

    section: ClassVar[str] = ""
    toml: ClassVar[bool] = True     # False: environment only

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            _checked(f, getattr(self, f.name), f"[{self.section}] {f.name}")


S = TypeVar("S", bound=_Section)


@dataclass(frozen=True)
class HomeConfig(_Section):
    section = "home"
    toml = False
    data_dir: str = setting("data", "the data home (lake, bundles, inbox); `--data-dir` overrides it",
                            env=DATA_DIR_ENV)


@dataclass(frozen=True)
class EngineConfig(_Section):
    section = "engine"
    name: str = setting("duckdb", "where the log-level SQL runs: duckdb or spark (`--engine` overrides it)",
                        choices=("duckdb", "spark"))
    duckdb_threads: int = setting(0, "DuckDB threads; 0 = all cores", minimum=0)
    duckdb_memory_limit: str = setting("3GB", "DuckDB's memory cap; it spills to <data home>/tmp beyond it")
    duckdb_ingest_memory_limit: str = setting(
        "5GB", "DuckDB's memory cap while ingest reads, checks and writes a file (its checked rows "
        "beside the write's buffers); \"\" = duckdb_memory_limit")
    spark_master: str = setting("", '"" = local[2], or under spark-submit the master it was given',
                                env="BEHAVIOR_SPARK_MASTER")
    spark_remote: str = setting("", 'a Spark Connect URL (sc://host:15002); "" = a JVM in this process',
                                env="BEHAVIOR_SPARK_REMOTE")
    spark_lake: str = setting("", 'Hadoop-compatible lake URI (s3a://, hdfs://); "" = the data home\'s lake',
                              env="BEHAVIOR_SPARK_LAKE")
    spark_shuffle_partitions: int = setting(4, "Spark shuffle partitions; raise it on a cluster",
                                            env="BEHAVIOR_SPARK_SHUFFLE_PARTITIONS", above=0)
    spark_driver_memory: str = setting("2g", "Spark driver memory (local master only)",
                                       env="BEHAVIOR_SPARK_DRIVER_MEMORY")
    spark_cache: bool = setting(True, "persist the as_of-cut payments: a run scans them about 20 times")
    spark_conf: dict = setting({}, 'any other Spark settings, e.g. `{"spark.executor.memory" = "8g"}`')


@dataclass(frozen=True)
class LoyaltyConfig(_Section):
    section = "loyalty"
    model: str = setting("auto", 'the BTYD model: auto (chosen on the holdout), or bgnbd or mbgnbd to force one '
                         '(MBG/NBD lets one-time buyers drop out)', choices=("auto", "bgnbd", "mbgnbd"))
    penalizer: float = setting(0.0, "L2 penalty of the BTYD fit", minimum=0)
    horizon_days: int = setting(90, "expected purchases over this many days", above=0)
    clv_horizon_days: int = setting(365, "customer lifetime value over this many days", above=0)
    discount_rate_annual: float = setting(0.10, "yearly discount rate of the lifetime value", minimum=0)
    holdout_days: int = setting(90, "fit before as_of - holdout_days, check the next holdout_days", above=0)


@dataclass(frozen=True)
class RecommendConfig(_Section):
    section = "recommend"
    test_days: int = setting(30, "the held-out period just before as_of (reported, never used to choose)", above=0)
    valid_days: int = setting(30, "the validation period before it (the model is chosen there)", above=0)
    k: int = setting(10, "list length the models are scored at (precision@k, ...)", above=0)
    max_eval_users: int = setting(10_000, "validation users sampled for the search", above=0)
    max_fit_users: int = setting(100_000, "training users the search fits candidates on (the chosen model "
                                          "is refit on all; ALS's item factors on this many, then every "
                                          "user's factors from them)", above=0)
    search_seconds: float = setting(4.0, "budget of the search's successive halving over the candidates, in "
                                    "reference seconds: estimated from the data's shape, about seconds on 2 "
                                    "cores; never the clock, so any machine makes the same choice",
                                    above=0)
    seed: int = setting(0, "seed of the samples and of the models' initialisation", minimum=0)
    trainer: str = setting("local", "local, or spark_als: MLlib ALS on the Spark engine",
                           env="BEHAVIOR_RECOMMEND_TRAINER", choices=("local", "spark_als"))


@dataclass(frozen=True)
class ChurnConfig(_Section):
    section = "churn"
    horizon_days: int = setting(0, "a customer churned if they make no payment in this many days after a cutoff; "
                                   "0 = chosen from the repeat customers' usual gap before as_of (docs/stages.md)",
                                minimum=0)
    step_days: int = setting(30, "days between two training cutoffs", above=0)
    max_train_cutoffs: int = setting(4, "training cutoffs at most", above=0)
    min_history_days: int = setting(90, "history a cutoff needs after the first payment", above=0)
    max_train_rows: int = setting(100_000, "training rows per cutoff and for the fit; a seeded uniform sample "
                                           "above it", above=0)
    max_model_users: int = setting(1_000_000, "customers the cutoff datasets are built for at most (fewer when "
                                              "the fit and the validation need fewer); a seeded uniform sample "
                                              "(every customer is still scored)", above=0)
    seed: int = setting(0, "seed of the samples (a cutoff's sample uses seed + its number)", minimum=0)


@dataclass(frozen=True)
class PromotionsConfig(_Section):
    section = "promotions"
    pre_days: int = setting(90, "the pre-period before a promotion's start (CUPED covariates)", above=0)
    min_train_per_group: int = setting(100, "training users per group (treatment, control) below which no "
                                            "uplift model is trained", above=0)
    qini_half_width: float = setting(0.03, "half-width of the 95% interval of a candidate's validation Qini that "
                                           "an arm's sample is sized for: a larger arm is trained and chosen on "
                                           "a seeded sample (every customer is still scored)", above=0)
    seed: int = setting(0, "seed of the train / validation / test split of users and of the uplift models",
                        minimum=0)


@dataclass(frozen=True)
class ApiConfig(_Section):
    section = "api"
    toml = False
    keys_file: str = setting("", 'the API keys file; "" = <data home>/api_keys.json', env="BEHAVIOR_API_KEYS_FILE")
    keys: str = setting("", "keys as JSON, in the keys file's format (hashes, never plaintext)",
                        env="BEHAVIOR_API_KEYS")
    rate_limit: float = setting(50.0, "requests per second per key, sustained (0 = no limit), counted by each "
                                      "worker process on its own; requests without a valid key are limited the "
                                      "same way per client address", env="BEHAVIOR_API_RATE_LIMIT", minimum=0)
    rate_burst: int = setting(100, "requests a key may make at once", env="BEHAVIOR_API_RATE_BURST", minimum=1)
    max_body_bytes: int = setting(65_536, "largest request body accepted", env="BEHAVIOR_API_MAX_BODY_BYTES",
                                  minimum=0)
    max_header_bytes: int = setting(65_536, "largest request line and headers accepted, 431 above",
                                    env="BEHAVIOR_API_MAX_HEADER_BYTES", minimum=0)
    request_timeout: float = setting(10.0, "seconds a request may take to arrive whole, and a new connection to "
                                           "send its first request; 408 and close after (0 = no limit)",
                                     env="BEHAVIOR_API_REQUEST_TIMEOUT", minimum=0)
    reload_interval: float = setting(5.0, "seconds between two looks at CURRENT (0 = no polling)",
                                     env="BEHAVIOR_API_RELOAD_INTERVAL", minimum=0)
    max_notification_bytes: int = setting(2_097_152, "largest payment notification body",
                                          env="BEHAVIOR_API_MAX_NOTIFICATION_BYTES", minimum=0)


@dataclass(frozen=True)
class Config:
    """Every setting of a run and of a server, section by section."""

    home: HomeConfig = field(default_factory=HomeConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    loyalty: LoyaltyConfig = field(default_factory=LoyaltyConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    promotions: PromotionsConfig = field(default_factory=PromotionsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)


def _sections() -> list[tuple[str, type[_Section]]]:
    return [(f.name, f.default_factory) for f in fields(Config)]  # type: ignore[misc]


def _from_env(f: Field, raw: str) -> Any:
    """The environment's text as the field's type."""
    name, want = f.metadata["env"], _kind(f)
    try:
        if want is bool:
            if raw.strip().lower() not in _TRUE + _FALSE:
                raise ValueError
            return raw.strip().lower() in _TRUE
        if want in (int, float):
            return want(raw)
        return raw
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}[want]
        raise ConfigError(f"{name}={raw!r} is not {kind} (default {_default(f)!r})") from None


def _read_toml(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    sections = dict(_sections())
    for name, values in data.items():
        kind = sections.get(name)
        if kind is None or not kind.toml:
            known = ", ".join(n for n, k in sections.items() if k.toml)
            why = ("is set by environment variables, not the config file" if kind is not None
                   else "is an unknown section")
            raise ConfigError(f"{path}: [{name}] {why}; the file's sections: {known}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {name} = {values!r} should be a [{name}] section")
        known_keys = {f.name for f in fields(kind)}
        bad = sorted(set(values) - known_keys)
        if bad:
            raise ConfigError(f"{path}: [{name}] has unknown keys {', '.join(bad)}; "
                              f"known: {', '.join(sorted(known_keys))}")
    return data


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The defaults, with the sections of the TOML file `path` over them, and the environment
    (`env`, default `os.environ`) over both. Raises ConfigError naming the file, section and key
    (or the variable) of the first value that cannot be used."""
    data = _read_toml(path) if path is not None else {}
    return Config(**{name: load_section(kind, env, data.get(name, {}), path) for name, kind in _sections()})


def load_section(kind: type[S], env: Mapping[str, str] | None = None,
                 values: Mapping[str, Any] | None = None, path: Path | None = None) -> S:
    """One section: its defaults, `values` (the file's, already known to be its keys) over them
    and its environment variables over both (for a process that needs one section only, such
    as the data home of a CLI command)."""
    env = os.environ if env is None else env
    chosen: dict[str, Any] = {}
    for f in fields(kind):
        if values and f.name in values:
            chosen[f.name] = _checked(f, values[f.name], f"{path}: [{kind.section}] {f.name}")
        raw = env.get(f.metadata["env"]) if f.metadata["env"] else None
        if raw is not None and raw.strip() != "":
            chosen[f.name] = _checked(f, _from_env(f, raw), f.metadata["env"])
    return kind(**chosen)


def reference_table() -> str:
    """docs/configuration.md's table: every setting, its TOML key, variable and default."""
    rows = ["| section | key | environment | default | meaning |", "|---|---|---|---|---|"]
    for name, kind in _sections():
        for f in fields(kind):
            default = _default(f)
            shown = "true" if default is True else "false" if default is False else \
                f'"{default}"' if isinstance(default, str) else "{}" if default == {} else f"{default:_}" \
                if isinstance(default, int) else f"{default}"
            env = f"`{f.metadata['env']}`" if f.metadata["env"] else ""
            key = f"`{f.name}`" if kind.toml else f"({f.name})"
            rows.append(f"| `[{name}]` | {key} | {env} | `{shown}` | {f.metadata['doc'].replace('|', '/')} |")
    return "\n".join(rows) + "\n"
