"""XLA:CPU settings this project is faster with, added to XLA_FLAGS before JAX starts its backend.

jaxlib 0.10 hands every convolution to YNNPACK on CPU. At this project's sizes (16–64 px maps, 8–64
channels) that is the slower path: measured on 2 cores, a 3×3 conv of (16, 16, 16, 64) → 64 runs
forward + backward in 12–14 ms through YNNPACK and 8–9 ms without (float32 accuracy the same), and the
quickstart's iterations take 21–26 % less time in stage 1 and about 12 % less in stage 2
(docs/RESULTS.md, "CPU convolutions"). XLA's own convolution path is used instead.

The flag only exists in the jaxlib releases listed below (an unknown XLA flag aborts the process), a
user's own `--xla_cpu_experimental_ynn_fusion_type` wins, and `FACEINPAINT_XLA_CPU_DEFAULTS=0` turns
the whole thing off. XLA reads XLA_FLAGS once, when the backend starts: importing this package after
JAX has run a computation leaves the process as it is.
"""

from __future__ import annotations

import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# Remove convolutions from YNNPACK's default fusion list; its other fusions (dots, elementwise) stay.
CPU_DEFAULTS = (f"{YNN_FLAG}=-individual_convolution",)
# jaxlib versions whose XLA knows the flag above (checked by parsing it, tests/test_xla_flags.py).
KNOWN_JAXLIB = ("0.10.",)
OPT_OUT = "FACEINPAINT_XLA_CPU_DEFAULTS"


def _installed_jaxlib() -> str | None:
  from importlib import metadata
  try:
    return metadata.version("jaxlib")
  except metadata.PackageNotFoundError:
    return None


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def with_cpu_defaults(xla_flags: str, jaxlib_version: str | None, opt_out: str | None = None) -> str:
  """XLA_FLAGS with this project's CPU defaults appended where they apply."""
  if opt_out is not None and opt_out.strip().lower() in ("0", "false", "no", "off"):
    return xla_flags
  if not jaxlib_version or not jaxlib_version.startswith(KNOWN_JAXLIB):
    return xla_flags
  present = {_flag_name(flag) for flag in xla_flags.split()}
  added = [flag for flag in CPU_DEFAULTS if _flag_name(flag) not in present]
  return " ".join([xla_flags.strip(), *added]).strip()


def apply_cpu_defaults() -> None:
  """Set XLA_FLAGS for this process (and the processes it starts) from `with_cpu_defaults`."""
  current = os.environ.get("XLA_FLAGS", "")
  updated = with_cpu_defaults(current, _installed_jaxlib(), os.environ.get(OPT_OUT))
  if updated != current:
    os.environ["XLA_FLAGS"] = updated
