import pytest

from behavior.errors import InputError
from pipelines.config import load_config


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[loyalty]\nmodel = "mbgnbd"\nholdout_days = 60\ndiscount_rate_annual = 0\n')
    cfg = load_config(f)
    assert (cfg.loyalty.model, cfg.loyalty.holdout_days, cfg.loyalty.horizon_days) == ("mbgnbd", 60, 90)


@pytest.mark.parametrize("text, message", [
    ("[nope]\nx = 1\n", "unknown section"),
    ("[loyalty]\nhorizon = 3\n", "unknown keys horizon"),
    ('[loyalty]\nholdout_days = "ninety"\n', "should be a int"),
    ('[loyalty]\nmodel = "pareto"\n', "bgnbd"),
    ("[loyalty]\nholdout_days = -1\n", "positive"),
    ("not toml =", "not valid TOML"),
])
def test_bad_config_names_the_problem(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(f)


def test_the_recommender_trainer_comes_from_the_file_or_the_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[recommend]\ntrainer = "spark_als"\n')
    assert load_config(f, env={}).recommend.trainer == "spark_als"
    assert load_config(f, env={"BEHAVIOR_RECOMMEND_TRAINER": "local"}).recommend.trainer == "local"
    assert load_config(None, env={}).recommend.trainer == "local"
    f.write_text('[recommend]\ntrainer = "spark"\n')
    with pytest.raises(InputError, match=r"\[recommend\] trainer = 'spark': use one of 'local', 'spark_als'"):
        load_config(f, env={})
    with pytest.raises(InputError, match=r"BEHAVIOR_RECOMMEND_TRAINER = 'mllib': use one of 'local', 'spark_als'"):
        load_config(None, env={"BEHAVIOR_RECOMMEND_TRAINER": "mllib"})


def test_the_spark_als_trainer_on_duckdb_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("BEHAVIOR_RECOMMEND_TRAINER", "spark_als")
    monkeypatch.setattr("sys.argv", ["behavior", "--data-dir", str(tmp_path), "run", "--engine", "duckdb"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and 'trainer = "spark_als" trains on Spark but the engine is \'duckdb\'' in err
    assert "--engine spark" in err


# ---------------------------------------------------------------- the one configuration
from dataclasses import fields  # noqa: E402
from pathlib import Path  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

from behavior.store.config import (  # noqa: E402
    ChurnConfig, Config, ConfigError, PromotionsConfig, load_config as load, reference_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _int_keys() -> list[tuple[str, str, int]]:
    """(section, key, smallest valid value) of every whole-number key of the file."""
    out = []
    for s in fields(Config):
        kind = s.default_factory
        if not kind.toml:
            continue
        for f in fields(kind):
            if type(f.default) is int:
                low = f.metadata["minimum"] if f.metadata["minimum"] is not None else f.metadata["above"] + 1
                out.append((s.name, f.name, int(low)))
    return out


INT_KEYS = _int_keys()


def test_without_file_or_environment_every_setting_is_its_default():
    assert load(None, env={}) == Config()
    cfg = load(None, env={})
    assert (cfg.churn.horizon_days, cfg.churn.max_train_rows, cfg.promotions.min_train_per_group) == (0, 100_000, 100)
    assert (cfg.home.data_dir, cfg.api.rate_limit, cfg.engine.spark_shuffle_partitions) == ("data", 50.0, 4)


def test_the_docs_list_every_setting_with_its_default():
    assert reference_table() in DOCS.read_text(encoding="utf-8")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(INT_KEYS), st.integers(min_value=0, max_value=10**12))
def test_a_whole_number_key_is_read_from_the_file_or_refused_naming_it(tmp_path_factory, key, value):
    section, name, low = key
    f = tmp_path_factory.mktemp("cfg") / "run.toml"
    f.write_text(f"[{section}]\n{name} = {value}\n")
    if value >= low:
        assert getattr(getattr(load(f, env={}), section), name) == value
    else:
        with pytest.raises(ConfigError, match=rf"^{f}: \[{section}\] {name} = {value} must be"):
            load(f, env={})


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(INT_KEYS), st.one_of(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5),
                                           st.floats(allow_nan=False, allow_infinity=False), st.booleans()))
def test_a_value_of_another_type_is_refused_naming_file_section_and_key(tmp_path_factory, key, value):
    import json

    section, name, _ = key
    f = tmp_path_factory.mktemp("cfg") / "run.toml"
    f.write_text(f"[{section}]\n{name} = {json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()}\n")
    with pytest.raises(ConfigError, match=rf"^{f}: \[{section}\] {name} = .* should be a int"):
        load(f, env={})


@pytest.mark.parametrize("text, message", [
    ("[churn]\nhorizon = 3\n", r"\[churn\] has unknown keys horizon; known: .*horizon_days"),
    ("[promotions]\nseed = -1\n", r"\[promotions\] seed = -1 must be at least 0"),
    ("[api]\nrate_limit = 3\n", r"\[api\] is set by environment variables, not the config file"),
    ("[home]\ndata_dir = 'x'\n", r"\[home\] is set by environment variables"),
    ("churn = 3\n", r"churn = 3 should be a \[churn\] section"),
    ("[engine]\nspark_cache = 1\n", r"\[engine\] spark_cache = 1 should be a bool"),
])
def test_bad_sections_and_keys_name_the_file_and_the_key(tmp_path, text, message):
    f = tmp_path / "run.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{f}: {message}"):
        load(f, env={})


def test_the_environment_beats_the_file_and_a_bad_variable_is_named(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[engine]\nspark_master = "yarn"\nspark_shuffle_partitions = 64\n')
    cfg = load(f, env={"BEHAVIOR_SPARK_MASTER": "spark://head:7077", "BEHAVIOR_SPARK_SHUFFLE_PARTITIONS": " ",
                       "BEHAVIOR_API_RATE_BURST": "7", "BEHAVIOR_DATA_DIR": "/srv/behavior"})
    assert (cfg.engine.spark_master, cfg.engine.spark_shuffle_partitions) == ("spark://head:7077", 64)
    assert (cfg.api.rate_burst, cfg.home.data_dir) == (7, "/srv/behavior")
    with pytest.raises(ConfigError, match=r"BEHAVIOR_SPARK_SHUFFLE_PARTITIONS='many' is not a whole number"):
        load(f, env={"BEHAVIOR_SPARK_SHUFFLE_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match=r"BEHAVIOR_API_RATE_BURST = 0 must be at least 1"):
        load(None, env={"BEHAVIOR_API_RATE_BURST": "0"})


def test_a_section_built_in_code_is_held_to_the_same_rules():
    assert ChurnConfig(horizon_days=30).horizon_days == 30
    assert ChurnConfig(horizon_days=0).horizon_days == 0    # 0: chosen from the data's rhythm
    with pytest.raises(ConfigError, match=r"\[churn\] horizon_days = -1 must be at least 0"):
        ChurnConfig(horizon_days=-1)
    with pytest.raises(ConfigError, match=r"\[promotions\] seed = '1' should be a int"):
        PromotionsConfig(seed="1")


def test_a_bad_config_file_exits_2_naming_the_file_section_and_key(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    f = tmp_path / "run.toml"
    f.write_text("[churn]\nhorizon = 30\n")
    monkeypatch.setattr("sys.argv", ["behavior", "--data-dir", str(tmp_path / "home"), "run", "--config", str(f)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert f"{f}: [churn] has unknown keys horizon" in capsys.readouterr().err


def test_the_recommender_search_budget_comes_from_the_file_and_must_be_positive(tmp_path):
    f = tmp_path / "c.toml"
    assert load(None, env={}).recommend.search_seconds == 4.0
    f.write_text("[recommend]\nsearch_seconds = 7.5\n")
    assert load(f, env={}).recommend.search_seconds == 7.5
    f.write_text("[recommend]\nsearch_seconds = 0\n")
    with pytest.raises(ConfigError, match=r"\[recommend\] search_seconds = 0.0 must be positive"):
        load(f, env={})
