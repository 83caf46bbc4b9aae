"""The benchmark header's host description: model, cores and vector extensions, read from
/proc/cpuinfo (x86 flags or ARM features)."""
from kd_jax.bench import host

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve sve2 bf16 i8mm
CPU implementer\t: 0x41
"""


def test_x86_model_and_vector_extensions_in_a_fixed_order():
  d = host.describe(X86)
  assert d["cpu_model"] == "AMD EPYC 9R14 96-Core Processor"
  assert d["cpu_family_model"] == "25/17"  # "model name" is not "model".
  assert d["cpu_vector"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                             "avx512_vnni", "avx512_bf16"]
  assert host.header(d) == (f"host CPU: AMD EPYC 9R14 96-Core Processor (family/model 25/17), "
                            f"{d['cpu_cores']} "
                            f"cores, sse4_2 avx avx2 fma avx512f avx512bw avx512vl "
                            f"avx512_vnni avx512_bf16")


def test_arm_features_are_read_too():
  d = host.describe(ARM)
  assert d["cpu_vector"] == ["asimd", "sve", "sve2", "bf16", "i8mm"]
  assert d["cpu_family_model"] == ""


def test_without_cpuinfo_the_header_says_the_extensions_are_unknown():
  d = host.describe("")
  assert d["cpu_vector"] == [] and d["cpu_model"]
  assert host.header(d).endswith("cores, vector extensions unknown")
