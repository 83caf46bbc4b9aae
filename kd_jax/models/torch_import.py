"""PyTorch state_dict -> Flax variables for the zoo (RepDistiller/mdistiller names, torchvision
for the ImageNet ResNets, timm for the ViTs).

Every zoo model creates its layers in the order the PyTorch original registers them, so the
state_dict's parameterised modules (conv, BN, linear) and the Flax modules pair up in order;
each pair is checked for kind and shape. Layouts: conv OIHW -> HWIO, linear [out, in] ->
[in, out]; BN weight/bias/running_mean/running_var -> scale/bias and batch_stats mean/var.
torch is not needed here: the state_dict may hold torch tensors or numpy arrays.

The ViTs are read by name instead (``_from_timm``): timm's keys with ``blocks.<i>`` ->
``blocks_<i>`` and ``.`` -> ``/``; Linear and LayerNorm weights -> kernel (transposed) and
scale, the patch convolution OIHW -> HWIO; the tokens and the position embedding as they are.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.errors import KdJaxError
from kd_jax.models import vit

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _to_numpy(t) -> np.ndarray:
  if hasattr(t, "detach"):
    t = t.detach().cpu().numpy()
  return np.asarray(t)


def _torch_modules(state_dict: Mapping[str, Any]) -> list[tuple[str, str, dict]]:
  """[(module name, kind, {suffix: array})] in state_dict order; kind: conv | bn | linear."""
  modules: dict[str, dict[str, np.ndarray]] = {}
  for key, value in state_dict.items():
    prefix, _, suffix = key.rpartition(".")
    modules.setdefault(prefix, {})[suffix] = _to_numpy(value)
  out = []
  for name, tensors in modules.items():
    if "running_mean" in tensors:
      kind = "bn"
    elif "weight" in tensors and tensors["weight"].ndim == 4:
      kind = "conv"
    elif "weight" in tensors and tensors["weight"].ndim == 2:
      kind = "linear"
    else:
      raise KdJaxError(f"state_dict entry {name!r} ({', '.join(tensors)}) is not a conv, "
                       f"BatchNorm or linear layer of the zoo")
    out.append((name, kind, tensors))
  return out


def _flax_modules(model, input_shape) -> list[tuple[str, str]]:
  """[(params path, kind)] of the model's conv, BN and dense layers in call order (which is
  creation order; the params dict itself comes back with sorted keys)."""
  import flax.linen as nn
  kinds = ((nn.Conv, "conv"), (nn.BatchNorm, "bn"), (nn.Dense, "linear"))
  order: list[tuple[str, str]] = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      for cls, kind in kinds:
        if isinstance(context.module, cls):
          path = "/".join(context.module.path)
          if (path, kind) not in order:
            order.append((path, kind))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)),
                                      train=False))
  return order


def _get(tree, path):
  for k in path.split("/"):
    tree = tree[k]
  return tree


# Where training scripts keep the weights in their checkpoint dicts: RepDistiller, mdistiller's
# teachers and DeiT under 'model'; timm's train.py and pytorch/examples' ImageNet script under
# 'state_dict'.
_WRAPPERS = ("model", "state_dict")


def unwrap(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
  """The state_dict in a training checkpoint (the weights under one of ``_WRAPPERS``, or the
  checkpoint itself if it is a state_dict), DataParallel's ``module.`` prefix removed."""
  for key in _WRAPPERS:
    if isinstance(checkpoint.get(key), Mapping):
      checkpoint = checkpoint[key]
      break
  return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def from_torch(state_dict: Mapping[str, Any], name: str, num_classes: int,
               input_shape=(32, 32, 3)) -> dict[str, Any]:
  """Flax variables ``{'params', 'batch_stats'}`` of zoo model ``name`` from a PyTorch state_dict.

  A training checkpoint dict (weights under ``'model'`` or ``'state_dict'``, keys with
  DataParallel's ``module.``: ``unwrap``) is accepted as is. A ViT's (timm's, ``{'params'}``
  only) image size is read from its position embedding, not ``input_shape``. Raises a
  one-line KdJaxError naming the tensor and the expected shape on any mismatch.
  """
  from kd_jax import models
  state_dict = unwrap(state_dict)
  model = models.create(name, num_classes)
  if isinstance(model, vit.VisionTransformer):
    input_shape = _vit_input_shape(state_dict, model, input_shape)
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, *input_shape)), train=False))
  if isinstance(model, vit.VisionTransformer):
    return _from_timm(state_dict, name, template["params"])
  params_t, stats_t = template["params"], template.get("batch_stats", {})
  flax_mods = _flax_modules(model, input_shape)
  torch_mods = _torch_modules(state_dict)
  params: dict = {}
  stats: dict = {}

  def put(tree, path, leaf, value):
    node = tree
    for k in path.split("/"):
      node = node.setdefault(k, {})
    node[leaf] = jnp.asarray(value)

  def check(tname, got, fpath, want):
    if tuple(got) != tuple(want):
      raise KdJaxError(f"tensor {tname!r} has shape {tuple(got)}, but {name} expects "
                       f"{tuple(want)} there (Flax {fpath})")

  for i, (fpath, fkind) in enumerate(flax_mods):
    if i >= len(torch_mods):
      raise KdJaxError(f"the state_dict is missing tensors: {name} needs a {fkind} layer at "
                       f"Flax {fpath} (and {len(flax_mods) - i - 1} more layers) after "
                       f"{torch_mods[-1][0] if torch_mods else 'nothing'!r}")
    tname, tkind, t = torch_mods[i]
    if tkind != fkind:
      raise KdJaxError(f"state_dict module {tname!r} is a {tkind} layer, but {name} expects a "
                       f"{fkind} layer there (Flax {fpath}): missing or extra tensors before it?")
    p = _get(params_t, fpath)
    if fkind == "bn":
      for suffix in ("weight", "bias", "running_mean", "running_var"):
        if suffix not in t:
          raise KdJaxError(f"tensor {tname + '.' + suffix!r} is missing from the state_dict "
                           f"(expected shape {tuple(p['scale'].shape)})")
        check(f"{tname}.{suffix}", t[suffix].shape, fpath, p["scale"].shape)
      put(params, fpath, "scale", t["weight"])
      put(params, fpath, "bias", t["bias"])
      put(stats, fpath, "mean", t["running_mean"])
      put(stats, fpath, "var", t["running_var"])
      extra = set(t) - set(_BN_SUFFIXES)
    else:
      w = t["weight"]
      kernel = w.transpose(2, 3, 1, 0) if fkind == "conv" else w.T
      check(f"{tname}.weight", w.shape, fpath,
            (tuple(np.array(p["kernel"].shape)[[3, 2, 0, 1]]) if fkind == "conv"
             else p["kernel"].shape[::-1]))
      put(params, fpath, "kernel", kernel)
      if "bias" in p:
        if "bias" not in t:
          raise KdJaxError(f"tensor {tname + '.bias'!r} is missing from the state_dict "
                           f"(expected shape {tuple(p['bias'].shape)})")
        check(f"{tname}.bias", t["bias"].shape, fpath, p["bias"].shape)
        put(params, fpath, "bias", t["bias"])
      extra = set(t) - ({"weight", "bias"} if "bias" in p else {"weight"})
    if extra:
      raise KdJaxError(f"unexpected tensor(s) {', '.join(sorted(f'{tname}.{e}' for e in extra))} "
                       f"in the state_dict for {name} (Flax {fpath})")
  if len(torch_mods) > len(flax_mods):
    extra = [f"{n}.{k}" for n, _, t in torch_mods[len(flax_mods):] for k in t]
    raise KdJaxError(f"unexpected tensors in the state_dict for {name}: {', '.join(extra[:3])}"
                     f"{' ...' if len(extra) > 3 else ''} (the model has no such layers)")
  # Every leaf now has the template's structure; cast to its dtypes.
  params = jax.tree.map(lambda v, t: v.astype(t.dtype), params, dict(params_t))
  stats = jax.tree.map(lambda v, t: v.astype(t.dtype), stats, dict(stats_t))
  return {"params": params, "batch_stats": stats}


def _vit_input_shape(state_dict, model, default):
  """The (square) image a ViT's state_dict was built for: its position embedding holds one
  entry per patch (after the prefix tokens), its patch convolution the channels."""
  pos, proj = state_dict.get("pos_embed"), state_dict.get("patch_embed.proj.weight")
  if pos is None or proj is None:
    return default
  patches = int(pos.shape[1]) - model.prefix_tokens
  side = int(round(patches ** 0.5))
  if side * side != patches:
    return default
  return (side * model.patch_size, side * model.patch_size, int(proj.shape[1]))


def _from_timm(state_dict: Mapping[str, Any], name: str, params_t) -> dict[str, Any]:
  """Flax ``{'params'}`` of the ViT ``name`` from a timm ``VisionTransformer(Distilled)``
  state_dict, matched by name; every template leaf must be given, with its shape."""
  flat_t = {"/".join(k.key for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(params_t)[0]}
  flat: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    value = _to_numpy(value)
    path = re.sub(r"^blocks\.(\d+)\.", r"blocks_\1.", key)
    module, _, leaf = path.rpartition(".")
    module = module.replace(".", "/")
    if leaf == "weight":
      if value.ndim == 4:  # The patch convolution: OIHW -> HWIO.
        value, leaf = value.transpose(2, 3, 1, 0), "kernel"
      elif value.ndim == 2:
        value, leaf = value.T, "kernel"
      else:
        leaf = "scale"
    fpath = f"{module}/{leaf}" if module else leaf
    if fpath not in flat_t:
      raise KdJaxError(f"unexpected tensor {key!r} in the state_dict for {name} (it has no "
                       f"Flax {fpath}): another ViT configuration?")
    if tuple(value.shape) != tuple(flat_t[fpath].shape):
      raise KdJaxError(f"tensor {key!r} has shape {tuple(_to_numpy(state_dict[key]).shape)}, "
                       f"but {name} expects {tuple(flat_t[fpath].shape)} there (Flax {fpath}; "
                       f"another image size, patch size or width?)")
    flat[fpath] = value.astype(flat_t[fpath].dtype)
  missing = [k for k in flat_t if k not in flat]
  if missing:
    raise KdJaxError(f"the state_dict is missing tensors for {name}: Flax "
                     f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
  params: dict = {}
  for fpath, value in flat.items():
    node = params
    *parents, leaf = fpath.split("/")
    for k in parents:
      node = node.setdefault(k, {})
    node[leaf] = jnp.asarray(value)
  return {"params": params}


def load_torch_file(path: str) -> Mapping[str, Any]:
  """``torch.load(path, weights_only=True)``: a file that needs code execution is refused."""
  try:
    import torch
  except ImportError:
    raise KdJaxError("converting PyTorch checkpoints needs torch: "
                     "pip install -c constraints.txt -e '.[torch]'") from None
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except FileNotFoundError:
    raise KdJaxError(f"no such PyTorch checkpoint: {path}") from None
  except Exception as err:  # pylint: disable=broad-except
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise KdJaxError(f"refusing to load {path}: it is not a plain weights file "
                     f"(torch.load(weights_only=True) failed: {first[:200]}); if you trust it, "
                     f"save its weights alone: torch.save(torch.load(path, weights_only=False)"
                     f"['state_dict'], 'weights.pth') (or ['model'], where it keeps them)"
                     ) from None
