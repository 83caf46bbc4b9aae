"""A method's hyperparameter ranges (``Method.ranges``): every built-in method's name its
hyperparameters and hold its defaults; a value outside is refused when the method is built
and, from a config, at plan time in one line."""
import jax
import pytest

from kd_jax import methods
from kd_jax.distill import parsing
from kd_jax.errors import KdJaxError
from kd_jax.methods import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Range


def test_a_range_holds_what_it_says():
  assert 0 not in POSITIVE and 1e-30 in POSITIVE
  assert 0 in NON_NEGATIVE and -1e-30 not in NON_NEGATIVE
  assert 0 in FRACTION and 1 in FRACTION and 1.0000001 not in FRACTION and -1e-30 not in FRACTION
  assert 0 not in AT_LEAST_ONE and 1 in AT_LEAST_ONE
  assert (1, 2) in POSITIVE and (1, 0) not in POSITIVE and () in POSITIVE  # Each element.
  assert float("nan") not in Range() and float("nan") not in NON_NEGATIVE
  ranges = (POSITIVE, NON_NEGATIVE, FRACTION, AT_LEAST_ONE, Range(high=2), Range(0, 1, True))
  assert [str(r) for r in ranges] == ["> 0", ">= 0", "in [0, 1]", ">= 1", "<= 2", "in (0, 1]"]


@pytest.mark.parametrize("name", methods.names())
def test_every_methods_ranges_name_its_hyperparameters_and_hold_its_defaults(name):
  cls = methods.get(name)
  defaults = cls.hparams()
  assert set(cls.ranges) <= set(defaults)
  for field, allowed in cls.ranges.items():
    assert defaults[field] in allowed, (field, defaults[field], str(allowed))


def test_every_temperature_is_positive():
  ranged = {n: methods.get(n).ranges.get("temperature") for n in methods.names()
            if "temperature" in methods.get(n).hparams()}
  assert len(ranged) >= 9 and all(r == POSITIVE for r in ranged.values()), ranged


@pytest.mark.parametrize("entry, message", [
    ({"kd": dict(temperature=0)}, "config.objectives.kd: temperature must be > 0, got 0"),
    ({"ce": dict(label_smoothing=1.5)},
     "config.objectives.ce: label_smoothing must be in [0, 1], got 1.5"),
    ({"crd": dict(nce_k=0)}, "config.objectives.crd: nce_k must be >= 1, got 0"),
    ({"cfl": dict(sigmas=[0.1, -1.0])},
     "config.objectives.cfl: sigmas must be > 0 (each), got (0.1, -1.0)"),
    ({"vid": dict(init_pred_var=1e-6)},
     "config.objectives.vid: init_pred_var must be > eps (1e-05), got 1e-06"),
])
def test_a_value_outside_its_range_is_refused_at_plan_time_in_one_line(entry, message):
  with pytest.raises(KdJaxError) as err:
    parsing.parse_objectives({"ce": {}, **entry}, ["t"], True)
  assert str(err.value) == message


def test_building_a_method_outside_its_range_raises():
  with pytest.raises(ValueError, match=r"^temperature must be > 0, got -4$"):
    methods.get("kd")(temperature=-4)


def test_a_method_whose_post_init_skips_the_bases_is_still_checked_at_plan_time():
  @methods.register("test_ranges_skips_super")
  class Skips(methods.Method):
    scale: float = 1.0
    ranges = {"scale": POSITIVE}

    def __post_init__(self):  # No super().__post_init__(): built unchecked.
      pass

  try:
    assert Skips(scale=-1.0).scale == -1.0
    with pytest.raises(KdJaxError, match=r"^config.objectives.test_ranges_skips_super: scale "
                                         r"must be > 0, got -1.0$"):
      parsing.parse_objectives({"test_ranges_skips_super": dict(scale=-1.0)}, ["t"], True)
  finally:
    methods.REGISTRY.pop("test_ranges_skips_super")


def test_a_method_built_inside_a_jitted_function_takes_traced_hyperparameters():
  double = jax.jit(lambda t: methods.get("kd")(temperature=t).temperature * 2)
  assert float(double(3.0)) == 6.0
