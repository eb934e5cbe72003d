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
