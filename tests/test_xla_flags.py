"""The XLA:CPU defaults the package adds to XLA_FLAGS: merged, never overriding, and known to XLA."""

import os
import subprocess
import sys

from faceinpaint_jax import xla_flags

FLAG = xla_flags.CPU_DEFAULTS[0]


def test_defaults_are_appended_to_the_users_flags():
  assert xla_flags.with_cpu_defaults("", "0.10.2") == FLAG
  assert (xla_flags.with_cpu_defaults("--xla_force_host_platform_device_count=4", "0.10.2")
          == f"--xla_force_host_platform_device_count=4 {FLAG}")


def test_the_users_own_setting_wins():
  mine = f"{xla_flags.YNN_FLAG}=dot"
  assert xla_flags.with_cpu_defaults(mine, "0.10.2") == mine


def test_opt_out_and_unknown_jaxlib_leave_the_flags_alone():
  assert xla_flags.with_cpu_defaults("--a=1", "0.10.2", opt_out="0") == "--a=1"
  assert xla_flags.with_cpu_defaults("--a=1", "0.10.2", opt_out="off") == "--a=1"
  # A jaxlib whose XLA might not know the flag: an unknown XLA flag aborts the process.
  assert xla_flags.with_cpu_defaults("--a=1", "0.13.0") == "--a=1"
  assert xla_flags.with_cpu_defaults("--a=1", None) == "--a=1"


def _child(code: str, **env) -> subprocess.CompletedProcess:
  environment = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT)}
  environment.update(env, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                        timeout=120)


def test_importing_the_package_sets_the_flag_and_xla_accepts_it():
  # Runs a computation so XLA parses the flags: an unknown flag would abort the child.
  code = ("import faceinpaint_jax, os, jax, jax.numpy as jnp;"
          "x = jnp.ones((1, 8, 8, 4));"
          "y = jax.lax.conv_general_dilated(x, jnp.ones((3, 3, 4, 4)), (1, 1), 'SAME',"
          " dimension_numbers=('NHWC', 'HWIO', 'NHWC'));"
          "print(os.environ['XLA_FLAGS']); print(float(y[0, 4, 4, 0]), jax.device_count())")
  done = _child(code, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  assert done.returncode == 0, done.stderr[-2000:]
  flags_line, values_line = done.stdout.strip().splitlines()[-2:]
  installed = xla_flags._installed_jaxlib()
  if installed.startswith(xla_flags.KNOWN_JAXLIB):
    assert flags_line == f"--xla_force_host_platform_device_count=2 {FLAG}"
  assert values_line == "36.0 2"


def test_opt_out_through_the_environment():
  done = _child("import faceinpaint_jax, os; print(repr(os.environ.get('XLA_FLAGS')))",
                **{xla_flags.OPT_OUT: "0"})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == "None"
