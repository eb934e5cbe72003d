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
    cfg = load_config(f).recommend
    assert cfg.resolved_trainer(env={}) == "spark_als"
    assert cfg.resolved_trainer(env={"BEHAVIOR_RECOMMEND_TRAINER": "local"}) == "local"
    assert load_config(None).recommend.resolved_trainer(env={}) == "local"
    f.write_text('[recommend]\ntrainer = "spark"\n')
    with pytest.raises(InputError, match=r"\[recommend\] trainer = 'spark': use one of 'local', 'spark_als'"):
        load_config(f)
    with pytest.raises(InputError, match=r"BEHAVIOR_RECOMMEND_TRAINER = 'mllib': use one of 'local', 'spark_als'"):
        cfg.resolved_trainer(env={"BEHAVIOR_RECOMMEND_TRAINER": "mllib"})


def test_the_spark_als_trainer_on_duckdb_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("BEHAVIOR_RECOMMEND_TRAINER", "spark_als")
    monkeypatch.setattr("sys.argv", ["behavior", "--data-dir", str(tmp_path), "run", "--engine", "duckdb"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and 'trainer = "spark_als" trains on Spark but the engine is \'duckdb\'' in err
    assert "--engine spark" in err


def test_the_recommender_search_budget_comes_from_the_file_and_must_be_positive(tmp_path):
    f = tmp_path / "c.toml"
    assert load_config(None).recommend.search_seconds == 25.0
    f.write_text("[recommend]\nsearch_seconds = 7.5\n")
    assert load_config(f).recommend.search_seconds == 7.5
    f.write_text("[recommend]\nsearch_seconds = 0\n")
    with pytest.raises(InputError, match=r"\[recommend\] search_seconds must be positive"):
        load_config(f)
