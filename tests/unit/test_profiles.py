import pytest

from course_utils import profiles
from course_utils.errors import UsageError


def test_both_profiles_have_the_same_lessons_and_knobs():
    quick, full = profiles.PROFILES["quick"], profiles.PROFILES["full"]
    assert quick.keys() == full.keys()
    for key in quick:
        assert quick[key].keys() == full[key].keys(), key


def test_auto_is_full_on_gpu_and_quick_elsewhere(monkeypatch):
    monkeypatch.delenv(profiles.ENV_VAR, raising=False)
    assert profiles.resolve_profile("auto", gpu_available=True) == "full"
    assert profiles.resolve_profile("auto", gpu_available=False) == "quick"
    assert profiles.resolve_profile(None, gpu_available=False) == "quick"


def test_env_var_overrides_auto_but_not_an_explicit_choice(monkeypatch):
    monkeypatch.setenv(profiles.ENV_VAR, "quick")
    assert profiles.resolve_profile("auto", gpu_available=True) == "quick"
    assert profiles.resolve_profile("full", gpu_available=True) == "full"


def test_unknown_profile_names_the_allowed_values(monkeypatch):
    with pytest.raises(UsageError, match="PROFILE='fast'.*quick, full"):
        profiles.resolve_profile("fast", gpu_available=False)
    monkeypatch.setenv(profiles.ENV_VAR, "huge")
    with pytest.raises(UsageError, match="HPDL_PROFILE"):
        profiles.resolve_profile("auto", gpu_available=False)


def test_size_override_wins_and_unknown_knob_is_clear():
    assert profiles.size("quick", "dnn_from_scratch", "hidden", override=7) == 7
    default = profiles.PROFILES["quick"]["dnn_from_scratch"]["hidden"]
    assert profiles.size("quick", "dnn_from_scratch", "hidden") == default
    with pytest.raises(UsageError, match="no knob 'width'"):
        profiles.size("quick", "dnn_from_scratch", "width")
    with pytest.raises(UsageError, match="no sizes for 'nope'"):
        profiles.sizes("quick", "nope")
