"""Every public loss refuses what it cannot take, in one line naming the argument and the
shape it expects: a list where one array is expected, an array of the wrong rank, lists of
unequal length. (A literal port of ``Similarity()([f_s], [f_t])`` used to return 0.)"""
import inspect

import jax.numpy as jnp
import pytest

from kd_jax import losses
from kd_jax.losses.common import Array, Arrays

LOSSES = ("cross_entropy", "kd", "soft_cross_entropy", "logit_l2", "dkd", "fitnet",
          "attention_transfer", "factor_transfer", "paraphraser_reconstruction",
          "activation_boundaries", "vid", "neuron_selectivity_transfer", "fsp",
          "similarity_preserving", "correlation_congruence", "rkd", "pkt", "crd", "nce",
          "mean_matching", "stat_matching", "adain_loss", "teacher_head_mse",
          "adapted_teacher_loss", "mmd2", "reconstruction", "cfl", "hcl", "vitkd", "ofa")


def _valid(spec):
  if isinstance(spec, Arrays):
    return [_valid(spec.item)]
  rank = spec.ranks[0] if spec.ranks else spec.min_rank
  return jnp.zeros((2,) * rank)


def _arguments(fn):
  """Valid arrays for the checked arguments, None for the rest (the checks run first)."""
  specs = fn.expects
  params = inspect.signature(fn).parameters
  return {n: _valid(specs[n]) if n in specs else None for n, p in params.items()
          if n in specs or p.default is inspect.Parameter.empty}


CASES = [(name, arg) for name in LOSSES for arg in getattr(losses, name).expects]


def test_every_public_loss_declares_its_inputs():
  exported = {n for n in losses.__all__ if hasattr(getattr(losses, n), "expects")}
  assert set(LOSSES) <= exported
  assert all(getattr(losses, n).expects for n in LOSSES)


@pytest.mark.parametrize("name,arg", [(n, a) for n, a in CASES
                                      if isinstance(getattr(losses, n).expects[a], Array)])
def test_a_list_where_one_array_is_expected_is_refused(name, arg):
  fn = getattr(losses, name)
  kwargs = _arguments(fn)
  kwargs[arg] = [kwargs[arg]]
  with pytest.raises(TypeError, match=rf"^{name}: {arg} must be one array .+, got a list of 1"):
    fn(**kwargs)


@pytest.mark.parametrize("name,arg", CASES)
def test_an_array_of_the_wrong_rank_is_refused(name, arg):
  fn = getattr(losses, name)
  spec = fn.expects[arg]
  kwargs = _arguments(fn)
  item = spec.item if isinstance(spec, Arrays) else spec
  wrong = jnp.zeros((2,) * (max(item.ranks) + 1 if item.ranks else item.min_rank - 1))
  kwargs[arg] = [wrong] if isinstance(spec, Arrays) else wrong
  where = f"{arg}\\[0\\]" if isinstance(spec, Arrays) else arg
  with pytest.raises(ValueError, match=rf"^{name}: {where} must be an array .+, got shape "):
    fn(**kwargs)


@pytest.mark.parametrize("name,arg", [(n, a) for n, a in CASES
                                      if isinstance(getattr(losses, n).expects[a], Arrays)])
def test_one_array_where_a_list_is_expected_is_refused(name, arg):
  fn = getattr(losses, name)
  kwargs = _arguments(fn)
  kwargs[arg] = kwargs[arg][0]
  with pytest.raises(TypeError, match=rf"^{name}: {arg} must be a non-empty list of arrays"):
    fn(**kwargs)


@pytest.mark.parametrize("name", ["activation_boundaries", "fsp", "cfl"])
def test_unequal_layer_counts_are_refused(name):
  fn = getattr(losses, name)
  kwargs = _arguments(fn)
  first = next(a for a, s in fn.expects.items() if isinstance(s, Arrays))
  kwargs[first] = kwargs[first] * 2
  with pytest.raises(ValueError, match=rf"^{name}: .* has 2 maps and .* 1; they must have the "
                     r"same number$"):
    fn(**kwargs)


def test_the_repdistiller_call_shape_of_sp_is_refused_not_zero():
  f_s, f_t = jnp.ones((4, 2, 2, 3)), jnp.ones((4, 2, 2, 5))
  with pytest.raises(TypeError, match=r"^similarity_preserving: f_s must be one array "
                     r"\[B, \.\.\.\] \(rank >= 2\), got a list of 1"):
    losses.sp([f_s], [f_t])
