"""What the host CPU is, for benchmark headers: its model name, core count and the vector
extensions that decide how fast convolutions and matmuls run (AVX2, AVX-512 and its bf16 /
VNNI parts, AMX; NEON/SVE on ARM), so that figures from different machines are never mixed."""
from __future__ import annotations

import os
import platform
from typing import Any

# The extensions worth naming, in /proc/cpuinfo's spelling (x86 "flags", ARM "Features").
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                     "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
                     "asimd", "sve", "sve2", "bf16", "i8mm")


def describe(cpuinfo: str | None = None) -> dict[str, Any]:
  """``{"cpu_model": str, "cpu_family_model": "25/1" (x86 family/model; "" elsewhere),
  "cpu_cores": int, "cpu_vector": [extensions present]}`` from ``/proc/cpuinfo`` (or the
  text given), else from ``platform`` (no extensions known). A VM's model name may say only
  "AMD EPYC" for several generations; the x86 family and model tell them apart (25/1: Zen 3,
  25/17: Zen 4)."""
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    except OSError:
      cpuinfo = ""
  model, flags, family, number = "", set(), "", ""
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    key = key.strip().lower()
    if key in ("model name", "cpu model", "hardware") and not model:
      model = value.strip()
    elif key in ("flags", "features") and not flags:
      flags = set(value.split())
    elif key == "cpu family" and not family:
      family = value.strip()
    elif key == "model" and not number:
      number = value.strip()
  return {"cpu_model": model or platform.processor() or platform.machine() or "unknown",
          "cpu_family_model": f"{family}/{number}" if family and number else "",
          "cpu_cores": os.cpu_count() or 0,
          "cpu_vector": [e for e in VECTOR_EXTENSIONS if e in flags]}


def header(info: dict[str, Any]) -> str:
  """``'host CPU: AMD EPYC (family/model 25/1), 2 cores, avx2 fma'`` (``describe``'s
  fields)."""
  vector = " ".join(info["cpu_vector"]) or "vector extensions unknown"
  fm = info.get("cpu_family_model")
  return (f"host CPU: {info['cpu_model']}{f' (family/model {fm})' if fm else ''}, "
          f"{info['cpu_cores']} cores, {vector}")
