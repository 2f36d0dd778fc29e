"""Where a stage-2 train step spends its time: one D + G step under `jax.profiler`, by model part.

  python benchmarks/profile_step.py --config configs/celeba128.py [--batch 8] [--trace-dir DIR]

Traces one (warm) discriminator step and one generator step, maps every executed XLA op of the trace
back to the `op_name` of the compiled HLO, and prints one JSON line: per step, its wall seconds and the
op self-time (summed over threads, so it can exceed the wall time) grouped by model part and direction
(forward / backward), largest first, plus the ten heaviest single ops. The trace stays in --trace-dir
for TensorBoard's profile plugin or Perfetto.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import common
import jax

# Thread-pool bookkeeping and the caller's wait, not work.
_NOT_OPS = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ")


def op_names(hlo_text: str) -> dict:
  """Instruction name → op_name metadata, for every instruction of a compiled HLO module.

  Some instructions carry none (XLA rewrites dots inside loops, squeezing a unit batch dimension,
  and library fusions may lose it): such a fusion takes the op_name of its computation's root, and
  any other instruction that of the instruction calling the computation it sits in (a loop body's
  instructions, their `while`).
  """
  names, computation_of, computation_name, caller, fusion_callee = {}, {}, {}, {}, {}
  current = None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
    if header:
      current = header.group(1)
      continue
    instruction = re.match(r"^\s+(ROOT )?%([\w.\-]+) = ", line)
    if not instruction:
      continue
    name = instruction.group(2)
    computation_of[name] = current
    op_name = re.search(r'op_name="([^"]*)"', line)
    if op_name:
      names[name] = op_name.group(1)
      if instruction.group(1) or current not in computation_name:
        computation_name[current] = op_name.group(1)
    for called in re.findall(r"(?:calls|body|condition|to_apply)=%([\w.\-]+)", line):
      caller.setdefault(called, name)
    fused = re.search(r"calls=%([\w.\-]+)", line)
    if fused:
      fusion_callee[name] = fused.group(1)

  def resolve(name, depth=0):
    if name in names or depth > 32:
      return names.get(name)
    computation = computation_of.get(name)
    if computation in caller:
      return resolve(caller[computation], depth + 1)
    return None

  for name in list(computation_of):
    if name not in names:
      resolved = computation_name.get(fusion_callee.get(name)) or resolve(name)
      if resolved:
        names[name] = resolved
  return names


def model_part(op_name: str) -> str:
  """'jit(_generator_step)/transpose(jvp(Generator))/attention/.../convlstm/...' → 'G/attention/convlstm bwd'."""
  direction = "bwd" if "transpose(" in op_name else "fwd"
  if "non_local_attention_backward" in op_name:
    direction = "bwd"
  path = [p for p in op_name.split("/") if not p.startswith(("jit(", "jvp(", "transpose(", "closed_call",
                                                                 "while", "body", "checkpoint", "vmap("))]
  for part, label in (("non_local_attention", "non-local attention core"), ("convlstm", "convlstm"),
                      ("resblock", "resblocks"), ("non_local", "non-local 1x1 convs")):
    if any(part in p for p in path):
      top = next((p for p in path if p in ("attention", "completion", "global_disc", "local_disc")), "")
      return f"{top}/{label} {direction}".lstrip("/")
  for top in ("attention", "completion", "global_disc", "local_disc", "BiSeNet"):
    if top in path:
      return f"{top} {direction}"
  return f"other {direction}"


def self_times(trace_events):
  """Per event, its duration minus that of the events nested inside it on the same thread."""
  by_thread = collections.defaultdict(list)
  for event in trace_events:
    if event.get("ph") == "X":
      by_thread[(event["pid"], event["tid"])].append(event)
  for events in by_thread.values():
    events.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack = []
    for event in events:
      event["self"] = event["dur"]
      while stack and stack[-1]["ts"] + stack[-1]["dur"] <= event["ts"]:
        stack.pop()
      if stack:
        stack[-1]["self"] -= event["dur"]
      stack.append(event)
  return [e for events in by_thread.values() for e in events]


def main():
  ap = argparse.ArgumentParser()
  common.add_stage2_arguments(ap)
  ap.add_argument("--trace-dir", default=None)
  args = ap.parse_args()
  _, _, steps, state, batch, _ = common.stage2_setup(args)
  g_jit, parser = steps.generator_step.args
  programs = {
      "discriminator_step": steps.discriminator_step.lower(state, batch).compile().as_text(),
      "generator_step": g_jit.lower(state, batch, parser, True).compile().as_text()}

  def one_step(state):
    state, _ = steps.discriminator_step(state, batch)
    state = jax.block_until_ready(state)
    state, _ = steps.generator_step(state, batch, True)
    return jax.block_until_ready(state)

  state = one_step(state)  # compile and warm up outside the trace
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="faceinpaint_profile_")
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    one_step(state)
  path = sorted(glob.glob(os.path.join(trace_dir, "plugins/profile/*/perfetto_trace.json.gz")))[-1]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = self_times(trace["traceEvents"] if isinstance(trace, dict) else trace)
  # Each program's execution is bracketed by the caller's "wait for completion" event.
  waits = sorted((e for e in events if e["name"] == "ThunkExecutor::Execute (wait for completion)"),
                 key=lambda e: e["ts"])
  report = {"benchmark": "profile_stage2_step", "config": args.config, "batch": args.batch,
            "trace": path, "machine": common.machine(), "steps": {}}
  for (step, hlo), window in zip(programs.items(), waits):
    names = op_names(hlo)
    parts, ops = collections.Counter(), collections.Counter()
    for e in events:
      if window["ts"] <= e["ts"] <= window["ts"] + window["dur"] and not e["name"].startswith(_NOT_OPS):
        op_name = names.get(e["name"])
        part = model_part(op_name) if op_name else "unattributed (no op_name)"
        parts[part] += e["self"]
        ops[f'{e["name"]} ({op_name.split("/")[-1] if op_name else "?"}, {part})'] += e["self"]
    report["steps"][step] = {
        "wall_s": round(window["dur"] / 1e6, 3),
        "op_self_s": round(sum(parts.values()) / 1e6, 3),
        "by_part_s": {k: round(v / 1e6, 3) for k, v in parts.most_common()},
        "top_ops_s": {k: round(v / 1e6, 3) for k, v in ops.most_common(10)}}
  print(json.dumps(report))


if __name__ == "__main__":
  main()
