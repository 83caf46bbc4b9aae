"""The parts of a ViT block timed alone, kd_jax against timm: what ``kd_jax.benchmark``'s ViT
steps (docs/speed.md, "ViTs against timm") are made of.

  python benchmarks/vit_parts.py                         # DeiT-Ti's block (batch 32, 198 tokens)
  python benchmarks/vit_parts.py --width=384 --heads=6   # DeiT-S's
  git worktree add /tmp/before <commit>
  python benchmarks/vit_parts.py --baseline_tree=/tmp/before   # and that commit's vit.py in turn

In one round, PyTorch (2 threads, timm's modules, random weights), kd_jax, PyTorch again:
``attention``, ``mlp`` and ``block`` forward (PyTorch under ``no_grad``) and forward +
backward (the gradient of sum(output ** 2) with respect to the input and every parameter);
then kd_jax's exact GELU (``vit.gelu``) against ``jax.nn.gelu``'s erfc form, and the
matmuls of the block in both frameworks (a dense layer's on [B * T, D] tokens; the
attention's batched products). Milliseconds: the median of ``--calls`` calls after one
untimed call. float32; malloc on huge pages as kd_jax's entrypoints. Needs the test extra
(torch, timm); run from the repository root.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from kd_jax import runtime  # noqa: E402
from kd_jax.bench import host  # noqa: E402
from kd_jax.models import vit  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 32, "Images.")
_TOKENS = flags.DEFINE_integer("tokens", 198, "Tokens per image (DeiT-distilled at 224 px: 198).")
_WIDTH = flags.DEFINE_integer("width", 192, "Embedding width D.")
_HEADS = flags.DEFINE_integer("heads", 3, "Attention heads.")
_CALLS = flags.DEFINE_integer("calls", 20, "Timed calls per measurement (their median).")
_BASELINE = flags.DEFINE_string(
    "baseline_tree", "", "Another checkout of kd_jax (e.g. a git worktree of an older commit): "
    "the attention, MLP and block of its kd_jax/models/vit.py (with this tree's other modules) "
    "are also timed forward + backward, one call of each version in turn, --calls times: a "
    "busy host slows both alike.")


def _median_ms(fn: Callable[[], Any], calls: int) -> float:
  fn()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def _torch_parts(x: np.ndarray, heads: int, calls: int) -> dict[str, tuple[float, float]]:
  import torch
  from timm.layers import Mlp
  from timm.models.vision_transformer import Attention, Block
  torch.manual_seed(0)
  d = x.shape[-1]
  xt = torch.from_numpy(x.copy())
  out = {}
  for name, module in (("attention", Attention(d, heads, qkv_bias=True)),
                       ("mlp", Mlp(d, 4 * d)), ("block", Block(d, heads, qkv_bias=True))):
    xg = xt.clone().requires_grad_(True)

    def forward():
      with torch.no_grad():
        module(xt)

    def forward_backward():
      module.zero_grad(set_to_none=True)
      xg.grad = None
      (module(xg) ** 2).sum().backward()
    out[name] = (_median_ms(forward, calls), _median_ms(forward_backward, calls))
  return out


def _parts(vit_lib, heads: int, width: int) -> dict[str, tuple[Any, tuple]]:
  """part -> (module of ``vit_lib``, its extra call arguments)."""
  return {"attention": (vit_lib.Attention(heads), ()), "mlp": (vit_lib.Mlp(4 * width), ()),
          "block": (vit_lib.Block(heads), (False,))}


def _jitted(module, extra: tuple, x: jax.Array) -> tuple[Callable, Callable, Any]:
  """``(forward, gradient of sum(output ** 2) w.r.t. (variables, x), variables)``, jitted."""
  variables = module.init(jax.random.PRNGKey(0), x, *extra)
  forward = jax.jit(lambda v, x: module.apply(v, x, *extra))
  grad = jax.jit(jax.grad(lambda v, x: jnp.sum(forward(v, x) ** 2), argnums=(0, 1)))
  return forward, grad, variables


def _jax_parts(x: np.ndarray, heads: int, calls: int) -> dict[str, tuple[float, float]]:
  xj = jnp.asarray(x)
  out = {}
  for name, (module, extra) in _parts(vit, heads, x.shape[-1]).items():
    forward, grad, variables = _jitted(module, extra, xj)
    out[name] = (_median_ms(lambda: jax.block_until_ready(forward(variables, xj)), calls),
                 _median_ms(lambda: jax.block_until_ready(grad(variables, xj)), calls))
  return out


def _load_vit(tree: str):
  """``kd_jax/models/vit.py`` of another checkout, as a module of its own."""
  spec = importlib.util.spec_from_file_location(
      "kd_jax_baseline_vit", os.path.join(tree, "kd_jax", "models", "vit.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # flax's dataclasses look their module up.
  spec.loader.exec_module(module)
  return module


def _alternating(x: np.ndarray, heads: int, calls: int, versions: dict[str, Any]
                 ) -> dict[str, dict[str, list[float]]]:
  """part -> version -> the ms of each forward + backward call, the versions called in turn."""
  xj = jnp.asarray(x)
  out = {}
  for part in ("attention", "mlp", "block"):
    grads = {}
    for name, vit_lib in versions.items():
      _, grad, variables = _jitted(*_parts(vit_lib, heads, x.shape[-1])[part], xj)
      jax.block_until_ready(grad(variables, xj))
      grads[name] = (grad, variables)
    times = {name: [] for name in versions}
    for _ in range(calls):
      for name, (grad, variables) in grads.items():
        start = time.perf_counter()
        jax.block_until_ready(grad(variables, xj))
        times[name].append(1e3 * (time.perf_counter() - start))
    out[part] = times
  return out


def _gelu(x: np.ndarray, calls: int) -> list[tuple[str, float, float]]:
  rows = []
  for name, fn in (("jax.nn.gelu (erfc)", lambda a: jax.nn.gelu(a, approximate=False)),
                   ("vit.gelu (erf)", vit.gelu)):
    fwd = jax.jit(fn)
    grad = jax.jit(jax.grad(lambda a, f=fn: jnp.sum(f(a) * a)))
    rows.append((name, _median_ms(lambda: jax.block_until_ready(fwd(x)), calls),
                 _median_ms(lambda: jax.block_until_ready(grad(x)), calls)))
  return rows


def _matmuls(b: int, t: int, d: int, heads: int, calls: int
             ) -> list[tuple[str, float, float, float]]:
  import torch
  rng = np.random.RandomState(0)
  hd = d // heads
  shapes = {  # name -> (einsum, lhs shape, rhs shape)
      "tokens x qkv weight": ("nk,km->nm", (b * t, d), (d, 3 * d)),
      "tokens x fc1 weight": ("nk,km->nm", (b * t, d), (d, 4 * d)),
      "hidden x fc2 weight": ("nk,km->nm", (b * t, 4 * d), (4 * d, d)),
      "fc1 weight gradient": ("nk,nm->km", (b * t, d), (b * t, 4 * d)),
      "q k^T (per head)": ("bhqd,bhkd->bhqk", (b, heads, t, hd), (b, heads, t, hd)),
      "weights v (per head)": ("bhqk,bhkd->bhqd", (b, heads, t, t), (b, heads, t, hd)),
      "dv = weights^T d_out": ("bhqk,bhqd->bhkd", (b, heads, t, t), (b, heads, t, hd)),
  }
  rows = []
  for name, (eq, ls, rs) in shapes.items():
    lhs, rhs = rng.randn(*ls).astype(np.float32), rng.randn(*rs).astype(np.float32)
    lhs_axes, rhs_axes = eq.split("->")[0].split(",")
    sizes = {**dict(zip(lhs_axes, ls)), **dict(zip(rhs_axes, rs))}
    flops = 2 * float(np.prod(list(sizes.values())))  # One multiply-add per index tuple.
    fn = jax.jit(lambda a, c, e=eq: jnp.einsum(e, a, c))
    la, ra = jnp.asarray(lhs), jnp.asarray(rhs)
    jax_ms = _median_ms(lambda: jax.block_until_ready(fn(la, ra)), calls)
    lt, rt = torch.from_numpy(lhs), torch.from_numpy(rhs)
    torch_ms = _median_ms(lambda: torch.einsum(eq, lt, rt), calls)
    rows.append((name, flops, jax_ms, torch_ms))
  return rows


def _print_parts(label: str, parts: dict[str, tuple[float, float]]) -> None:
  for name, (fwd, both) in parts.items():
    print(f"{label:8s} {name:10s} forward {fwd:7.1f} ms   forward + backward {both:7.1f} ms",
          flush=True)


def main(argv):
  del argv
  runtime.restart_with_huge_pages()
  runtime.quiet_library_logs()
  logging.set_verbosity(logging.WARNING)  # Not JAX's notices of the platforms it looked for.
  b, t, d, heads, calls = _BATCH.value, _TOKENS.value, _WIDTH.value, _HEADS.value, _CALLS.value
  import torch
  import timm
  torch.set_num_threads(2)
  print(f"{host.header(host.describe())}; host malloc on huge pages: "
        f"{'yes' if runtime.huge_pages() else 'no'}")
  print(f"jax {jax.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"timm {timm.__version__}; block of batch {b}, {t} tokens, width {d}, {heads} "
        f"heads, float32, median of {calls} calls")
  x = np.random.RandomState(0).randn(b, t, d).astype(np.float32)
  _print_parts("pytorch", _torch_parts(x, heads, calls))
  _print_parts("kd_jax", _jax_parts(x, heads, calls))
  _print_parts("pytorch", _torch_parts(x, heads, calls))
  hidden = jnp.asarray(3 * np.random.RandomState(1).randn(b * t, 4 * d).astype(np.float32))
  for name, fwd, grad in _gelu(hidden, calls):
    print(f"gelu on [{b * t}, {4 * d}]: {name:20s} forward {fwd:6.2f} ms   gradient {grad:6.2f} ms")
  if _BASELINE.value:
    versions = {"baseline tree": _load_vit(_BASELINE.value), "this tree": vit}
    for part, times in _alternating(x, heads, calls, versions).items():
      print(f"in turn  {part:10s} forward + backward: " + "   ".join(
          f"{name} median {np.median(ms):6.1f} ms (min {min(ms):6.1f})"
          for name, ms in times.items()), flush=True)
  for name, flops, jax_ms, torch_ms in _matmuls(b, t, d, heads, calls):
    print(f"matmul {name:22s} kd_jax {jax_ms:6.2f} ms ({flops / jax_ms / 1e6:4.0f} GFLOP/s)   "
          f"pytorch {torch_ms:6.2f} ms ({flops / torch_ms / 1e6:4.0f} GFLOP/s)")


if __name__ == "__main__":
  app.run(main)
