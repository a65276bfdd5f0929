"""The rules of the notebook parameters (course_utils/parameters.py)."""

import math

import pytest

from course_utils import parameters, profiles, train
from course_utils.errors import UsageError
from course_utils.foundations import frameworks, numpy_mlp
from course_utils.gpu import roofline
from course_utils.session import setup
from course_utils.training import collectives


def test_every_knob_has_a_rule_and_every_rule_a_knob():
    for profile in profiles.PROFILE_NAMES:
        table = profiles.PROFILES[profile]
        assert set(table) == set(parameters.RULES)
        for key, knobs in table.items():
            assert set(knobs) == set(parameters.RULES[key]), key


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
def test_the_profiles_own_values_pass_their_rules(profile):
    for key, knobs in profiles.PROFILES[profile].items():
        for knob, value in knobs.items():
            rule = parameters.rule(key, knob)
            if value is None:
                assert isinstance(rule, parameters.Computed), f"{key}.{knob} is None"
                continue
            parameters.check(key, knob, value)


def test_names_agree_with_the_lessons_lists():
    assert parameters.NUMPY_ACTIVATIONS == numpy_mlp.ACTIVATIONS
    assert parameters.TORCH_OPTIMIZERS == train.OPTIMIZERS
    assert parameters.COMPILE_MODES == frameworks.COMPILE_MODES
    assert parameters.DTYPE_NAMES == roofline.DTYPE_NAMES
    assert parameters.BACKENDS == collectives.BACKEND_CHOICES


@pytest.mark.parametrize("rule, value, expected", [
    (parameters.Int(1), 3, 3),
    (parameters.Int(1), 1e6, 1_000_000),
    (parameters.Int(0), 0, 0),
    (parameters.Number(), 2, 2),
    (parameters.Flag(), False, False),
    (parameters.Ints(2, distinct=True), "2,3", (2, 3)),
    (parameters.Ints(2, distinct=True), "[2, 3]", (2, 3)),
    (parameters.Ints(1), [1.0, 7], (1, 7)),
    (parameters.Numbers(), "0.5 25", (0.5, 25.0)),
    (parameters.Choices(("a", "b")), "b,a", ("b", "a")),
    (parameters.AutoOr(parameters.Int(2)), "auto", "auto"),
    (parameters.AutoOr(parameters.Int(2)), 4, 4),
])
def test_good_values_come_back_normalised(rule, value, expected):
    assert rule.check("X", value) == expected


@pytest.mark.parametrize("rule, value, says", [
    (parameters.Int(1), 0, "X=0 is not valid; it must be an integer >= 1"),
    (parameters.Int(1, 1024), 1025, "X=1025 is not valid; it must be an integer from 1 to 1024"),
    (parameters.Int(1), True, "X=True"),
    (parameters.Int(1), 2.5, "X=2.5"),
    (parameters.Int(1), "3", "X='3'"),
    (parameters.Number(), math.nan, "X=nan is not valid; it must be a number > 0"),
    (parameters.Number(), math.inf, "X=inf"),
    (parameters.Number(inclusive=True, maximum=1.0, below=True), 1.0,
     "X=1.0 is not valid; it must be a number >= 0 and < 1"),
    (parameters.Flag(), 1, "X=1 is not valid; it must be True or False"),
    (parameters.Choice(("relu", "tanh")), "gelu", "X='gelu' is not valid; choose one of"),
    (parameters.Ints(2, distinct=True), "2,2", "one or more distinct integers >= 2"),
    (parameters.Ints(1), "", "X='' is not valid"),
    (parameters.Ints(1), "1,x", "X='1,x' is not valid"),
    (parameters.Numbers(), [0.5, -1], "X=[0.5, -1] is not valid"),
    (parameters.Choices(("a", "b")), "a,c", "'c' is unknown"),
    (parameters.AutoOr(parameters.Int(2)), 1, "X=1 is not valid; it must be an integer >= 2 "
     "(or 'auto')"),
])
def test_bad_values_name_the_parameter_and_what_is_allowed(rule, value, says):
    with pytest.raises(UsageError) as err:
        rule.check("X", value)
    assert says in str(err.value)


def test_context_checks_overrides_and_names_them_in_capitals():
    ctx = setup("quick", "cpu", 0, verbose=False)
    assert ctx.sizes("lab4_distributed", world_sizes="3,5")["world_sizes"] == (3, 5)
    assert ctx.size("start_here", "matmul_n", 64.0) == 64
    with pytest.raises(UsageError, match="^HIDDEN=0 is not valid"):
        ctx.sizes("dnn_from_scratch", hidden=0)
    with pytest.raises(UsageError, match="^MATMUL_N=-2 is not valid"):
        ctx.size("start_here", "matmul_n", -2)


def test_a_knob_without_a_rule_is_a_course_bug_named_as_such():
    with pytest.raises(UsageError, match="no parameter rule for start_here.nope"):
        parameters.check("start_here", "nope", 1)
