"""The config reference of the docs (``docs/configs.md``) is generated from ``base_config()``
and the comments beside its fields: every field a run understands is listed, with its default
and a meaning."""
import ml_collections

from kd_jax import config as config_lib
from kd_jax import config_reference


def _leaves(cfg, prefix=""):
  for key in cfg.keys():
    value = cfg[key]
    if isinstance(value, ml_collections.ConfigDict) and key not in (
        "teachers", "objectives", "runs", "eval_tasks", "lr_scale"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield prefix + key


def test_every_field_is_listed_once_with_its_default_and_a_meaning():
  rows = {field: (default, meaning) for field, default, meaning in config_reference.fields()}
  assert len(rows) == len(config_reference.fields())
  expected = {f for f in _leaves(config_lib.base_config())
              if not f.startswith(("downstream.data.", "downstream.optimizer."))}
  assert expected <= set(rows)
  assert rows["seed"][0] == "0" and rows["optimizer.lr"][0] == "0.05"
  assert [f for f, (_, meaning) in rows.items() if len(meaning) < 10] == []


def test_downstream_defaults_that_differ_are_listed():
  rows = {field: default for field, default, _ in config_reference.fields()}
  assert rows["downstream.optimizer.lr"] == "0.01"
  assert rows["downstream.data.name"] == "''"
  assert "downstream.data.train_split" not in rows  # The same as data.train_split.


def test_a_field_reads_the_comment_beside_it_and_its_continuation():
  def example():
    c = ml_collections.ConfigDict()
    # A block above the field.
    c.alpha = 1        # On the line,
                       # continued below.
    c.beta = 2         # Beta's own.
    return c
  assert config_reference.field_comments(example) == {
      "alpha": "A block above the field. On the line, continued below.",
      "beta": "Beta's own."}


def test_the_markdown_table_has_a_row_per_field():
  table = config_reference.markdown()
  assert table.startswith("| field | default | meaning |\n|---|---|---|\n")
  assert table.count("\n") == 2 + len(config_reference.fields())
  assert "| `data.train_augment` | `''` | \"\": preset; none \\| cifar" in table


def test_every_registered_method_has_a_card_with_its_defaults():
  from kd_jax import methods  # pylint: disable=g-import-not-at-top
  cards = config_reference.method_cards()
  assert [line[5:-1] for line in cards.splitlines() if line.startswith("### ")] == sorted(
      methods.REGISTRY)
  kd = cards[cards.index("### `kd`"):cards.index("### `logit_l2`")]
  assert "`KD` in `kd_jax/methods/logits.py`." in kd
  assert "| `temperature` | `4.0` | > 0 |" in kd and "| `logit_stand` | `False` |  |" in kd
  crd = cards[cards.index("### `crd`"):cards.index("### `ctkd`")]
  assert "| `nce_m` | `0.5` | in [0, 1] |" in crd and "| `nce_k` | `16384` | >= 1 |" in crd
  assert "| `sigmas` | `(0.001, 0.01, 0.05, 0.1, 0.2, 1.0, 2.0)` | > 0 (each) |" in cards
  ab = cards[cards.index("### `ab`"):cards.index("### `adain`")]
  assert "initialisation phase: activation_boundaries, 30 epochs, acts only in its phase" in ab
