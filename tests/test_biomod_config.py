import pytest
from pydantic import ValidationError

from fedsyn.biomod import COMBOS, BiomodConfig, combo_name, parse_combo


def test_defaults_are_the_papers_default_hyperparameters() -> None:
    config = BiomodConfig()
    assert (config.tau, config.d_re, config.gamma, config.wr_interval) == (0.09, 14.0, 2, 1)
    assert not config.any_method and combo_name(config) == "none"


@pytest.mark.parametrize("name", COMBOS)
def test_every_table3_combination_round_trips(name: str) -> None:
    config = BiomodConfig.from_combo(name, tau=0.5)
    assert combo_name(config) == name
    assert config.tau == 0.5


def test_combination_names_ignore_order_and_case_and_know_biomod_and_grapes() -> None:
    assert combo_name(BiomodConfig.from_combo("WS+fl")) == "fl+ws"
    assert combo_name(BiomodConfig.from_combo("biomod")) == "fl+wr+ws"
    assert combo_name(BiomodConfig.from_combo("grapes+ws")) == "ws+grapes"
    assert parse_combo("none") == {"fl": False, "wr": False, "ws": False, "grapes": False}


@pytest.mark.parametrize("bad", ["fl+xx", "", "fl+fl", "none+fl"])
def test_bad_combination_names_list_the_allowed_tokens(bad: str) -> None:
    with pytest.raises(ValueError, match="fl, wr, ws, grapes"):
        parse_combo(bad)


def test_from_combo_rejects_flags_in_the_hyperparameters() -> None:
    with pytest.raises(ValueError, match="fl"):
        BiomodConfig.from_combo("fl", fl=False)


def test_unknown_field_is_named_with_the_allowed_fields() -> None:
    with pytest.raises(ValidationError, match=r"unknown field\(s\) \['taus'\].*allowed fields: fl, wr, ws"):
        BiomodConfig(taus=0.1)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("fl_scope", "public", "fl_scope.*'private' or 'shared'"),
        ("layer_types", ("linear", "lstm"), "layer_types.*'linear' or 'conv2d'"),
        ("layer_types", ("linear", "linear"), "duplicates"),
        ("tau", 0.0, "tau.*greater than 0"),
        ("tau", 3.0, "tau.*less than or equal to 2"),
        ("d_re", -1.0, "d_re.*greater than 0"),
        ("wr_interval", 0, "wr_interval.*greater than or equal to 1"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match="(?s)" + message):
        BiomodConfig(**{field: value})


def test_splitting_needs_a_division_factor_of_at_least_two() -> None:
    with pytest.raises(ValidationError, match="gamma must be >= 2 when ws=True"):
        BiomodConfig(ws=True, gamma=1)
    assert BiomodConfig(ws=False, gamma=1).gamma == 1


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        BiomodConfig().fl = True  # type: ignore[misc]
