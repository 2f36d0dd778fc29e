"""Train variants of one config for the same time budget on this machine, evaluate each, compare.

  python -m faceinpaint_jax.ablate --config configs/quickstart.py --budget-minutes 6 \
      --variants full,baseline,no_gan,no_semantic --out runs/ablate

A variant is a name from `VARIANTS`, optionally followed by config overrides in brackets:
`baseline[train.g_learning_rate=1e-3;train.b1=0.9]`. The runner

1. times stage-1 and stage-2 iterations of every variant in short pilot runs of the training loop
   (`--pilot-steps` per stage; the sustained speed, compilation left out), all pilots before any training
   and `--pilot-rounds` times in alternating order (the fastest of each variant's pilots counts), so that
   every variant is timed in the same stretch;
2. sets each variant's `train.steps` so that its training takes the budget at those speeds, keeping the
   config's share of stage-1 steps and its warm-up, with the cosine horizon at the new `train.steps`
   (planned again after the first round of step 3, from that round's sustained speed);
3. trains the variants in `--rounds` interleaved chunks, each with `launch.py` in a fresh process
   resuming the previous chunk's checkpoint (OUT/<variant>/), so that a machine whose speed drifts over
   the run slows all of them alike, and
4. evaluates each on the held-out faces (`center` protocol, the same masks for every variant).

It writes OUT/results.json, OUT/results.md (hole PSNR, SSIM, LPIPS, attention IoU, images/s, steps and
the training loop's own seconds per variant) and OUT/grid.png (rows = held-out faces; columns = damaged
input, each variant, ground truth). An interrupted run picks up where it stopped when rerun with the same
arguments. The step counts depend on this machine's speed; rerun everything on one machine.

`--seeds N` trains every variant N times (train.seed = the config's seed + 0 … N − 1; one pilot and,
after the first round, one plan per variant: the replicas differ by seed, not by steps), because one
run of a GAN-trained model moves by about 0.1 dB hole PSNR with its seed and step count, as much as the
effects an ablation is after; the table then adds each variant's mean ± sample standard deviation and the
difference of its means from the first variant's.

`--clock` is what a budget counts: `wall` (the default) the training loop's wall seconds; `cpu` its
process's CPU seconds (all threads) divided by the cores it may use, which is the wall time of an
unshared machine. Use `cpu` on a VM whose hypervisor steals time (`st` in `top`): there the same compute
measured 0.444 and 0.610 s per wall-clock iteration minutes apart, which no plan survives, while CPU time
moves by about a tenth (docs/RESULTS.md). It assumes the variants keep the cores equally busy; the
results record both clocks, so that can be checked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np

from faceinpaint_jax.cli import UserError

REPO = pathlib.Path(__file__).resolve().parent.parent
CLOCKS = ("wall", "cpu")

# name → (what it tests, overrides of the config given to the runner)
VARIANTS = {
    "full": ("the config as given: every paper component on", {}),
    "baseline": ("plain encoder–decoder: no attentive module (mask given as input), no GAN, no L_sem",
                 {"model.attentive": False, "train.gan": False, "loss.semantic": 0.0}),
    "no_attentive": ("no attentive module (the mask given instead of A_N)", {"model.attentive": False}),
    "no_gan": ("no discriminators and no L_adv in stage 2", {"train.gan": False}),
    "no_semantic": ("no L_sem (no face parser)", {"loss.semantic": 0.0}),
    "no_non_local": ("no non-local blocks in the generator", {"model.non_local": False}),
    "no_ema": ("evaluated with the raw weights instead of their moving average", {"train.ema_decay": 0.0}),
    "batchnorm": ("BatchNorm in the generator (the paper's)", {"model.norm": "batch"}),
    "groupnorm": ("GroupNorm in the generator", {"model.norm": "group"}),
    "no_norm": ("no normalisation in the generator", {"model.norm": "none"}),
}

_SPEC = re.compile(r"^(?P<name>[a-z_0-9]+)(?:\[(?P<overrides>[^\]]*)\])?$")


def parse_variants(text: str) -> list[tuple[str, str, dict]]:
  """'full,baseline[train.b1=0.9]' → [(label, description, overrides)]."""
  variants = []
  for spec in filter(None, (s.strip() for s in re.split(r",(?![^\[]*\])", text))):
    match = _SPEC.match(spec)
    if not match or match["name"] not in VARIANTS:
      raise UserError(f"unknown variant {spec!r}; known: {', '.join(VARIANTS)} (overrides as name[key=value;...])")
    description, overrides = VARIANTS[match["name"]]
    overrides = dict(overrides)
    for item in filter(None, (match["overrides"] or "").split(";")):
      key, sep, value = item.partition("=")
      if not sep:
        raise UserError(f"override {item!r} in {spec!r} is not key=value")
      overrides[key.strip()] = _literal(value.strip())
      description += f"; {key.strip()}={value.strip()}"
    variants.append((spec, description, overrides))
  if not variants:
    raise UserError("no variants given")
  if len({label for label, _, _ in variants}) != len(variants):
    raise UserError("a variant is named twice")
  return variants


def with_seeds(variants: list, seeds: int, first_seed: int) -> list[tuple[str, str, dict]]:
  """Each variant `seeds` times, with train.seed = first_seed + 0 … seeds − 1, seed-major (every
  variant's first seed, then every variant's second, …), so that the interleaved rounds spread any drift
  of the machine over the seeds alike. One seed leaves the variants as they are.

  A replica's label is its variant's spec with `train.seed=S` appended to its overrides, which is what
  the same replica listed by hand in --variants would be called: a run can be summarised with --seeds
  whether its replicas were listed by hand or not.
  """
  if seeds == 1:
    return variants
  replicas = []
  for seed in range(first_seed, first_seed + seeds):
    for label, description, overrides in variants:
      if "train.seed" in overrides:
        raise UserError(f"variant {label!r} sets train.seed itself; --seeds sets it for every variant")
      replica = f"{label[:-1]};train.seed={seed}]" if label.endswith("]") else f"{label}[train.seed={seed}]"
      replicas.append((replica, f"{description}; train.seed={seed}", {**overrides, "train.seed": seed}))
  return replicas


def _variant_of(label: str) -> str:
  """The label of the variant a replica belongs to (its label without the `train.seed=S` override)."""
  stripped = re.sub(r";?train\.seed=\d+", "", label)
  return stripped.replace("[]", "").replace("[;", "[")


def _literal(text: str):
  import ast
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config, overrides: dict):
  from faceinpaint_jax.config import ConfigError, validate
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    node, *path = key.split(".")
    target = config
    for part in [node, *path[:-1]]:
      if part not in target:
        raise ConfigError(f"unknown config key {key!r}")
      target = target[part]
    leaf = path[-1] if path else node
    if leaf not in target:
      raise ConfigError(f"unknown config key {key!r}")
    target[leaf] = value
  validate(config)
  return config


def pilot_speeds(config, workdir: pathlib.Path, pilot_steps: int = 60, clock: str = "wall") -> dict:
  """Sustained seconds per stage-1 and stage-2 iteration of `config` on this machine.

  Runs the real training loop (input pipeline, logging, EMA: everything a run does) for `pilot_steps`
  steps of each stage in `workdir`, and takes the median of its logged windows, leaving out the first
  window of each stage (it holds that stage's compilation). Timing bare steps on pre-made batches
  instead under-estimated the full model's sustained iteration by 5–6 % and over-estimated the
  baseline's by 4 %, which gave the full model 12–22 % more training time than planned.
  """
  from faceinpaint_jax.train.loop import train_and_evaluate
  window = max(pilot_steps // 3, 1)
  pilot_steps = 3 * window
  pilot = apply_overrides(config, {
      "train.steps": 2 * pilot_steps, "train.stage1_steps": pilot_steps,
      "train.decay_steps": max(config.train.decay_steps, 2 * pilot_steps), "train.log_every": window,
      "train.checkpoint_every": 2 * pilot_steps, "train.sample_every": 0, "train.keep_checkpoints": 1})
  if workdir.exists():
    shutil.rmtree(workdir)
  workdir.mkdir(parents=True)
  code = train_and_evaluate(pilot, str(workdir))
  if code:
    raise UserError(f"the timing run in {workdir} exited with code {code}")
  windows = training_windows(workdir / "metrics.jsonl", config.train.batch_size, clock)
  seconds = {}
  for stage in (1, 2):
    per_step = [w["seconds"] / w["steps"] for w in windows if w["stage"] == stage][1:]
    seconds[f"stage{stage}"] = float(np.median(per_step))
  shutil.rmtree(workdir)
  return seconds


def usable_cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_windows(metrics_path: pathlib.Path, batch_size: int, clock: str = "wall") -> list[dict]:
  """The logged windows of a run: steps, stage, wall seconds (from its images/s) and `seconds` by
  `clock` (wall, or CPU seconds over the usable cores)."""
  windows, previous, cores = [], 0, usable_cores()
  for line in metrics_path.read_text().splitlines():
    row = json.loads(line)
    steps = row["step"] - previous
    if steps <= 0:  # a resumed run's log starts over at its restored step
      previous = row["step"]
      continue
    wall = steps * batch_size / row["images_per_sec"]
    if clock == "cpu":
      if "cpu_seconds" not in row:
        raise UserError(f"{metrics_path} logged no CPU time (a run from before cpu_seconds was logged): "
                        f"delete it to redo it, or use --clock wall")
      seconds = row["cpu_seconds"] / cores
    else:
      seconds = wall
    windows.append({"steps": steps, "stage": row["stage"], "seconds": seconds, "wall_seconds": wall})
    previous = row["step"]
  return windows


def plan_steps(config, seconds: dict, budget_s: float) -> dict:
  """train.* overrides that make a run of `config` last `budget_s` at the measured speeds."""
  t = config.train
  stage1_share = min(t.stage1_steps / t.steps, 1.0)
  per_step = stage1_share * seconds["stage1"] + (1 - stage1_share) * seconds["stage2"]
  steps = max(int(budget_s / per_step), 2)
  return {"train.steps": steps, "train.stage1_steps": int(round(stage1_share * steps)),
          "train.decay_steps": steps, "train.checkpoint_every": steps, "train.sample_every": 0,
          "train.log_every": max(1, min(t.log_every, steps))}


def _replan(replicas: list, config, budget_s: float, clock: str) -> None:
  """Plan a variant again from its first round of training, once.

  A pilot's minute is too short to time a variant to a few per cent: two pilots of the same compute
  measured 0.179 and 0.212 s per stage-1 iteration minutes apart, and a first round then sustained
  0.203 and 0.197 s for the baseline and the full model whose pilots said 0.179 and 0.215 (a plan 23 %
  in the baseline's favour). The first round (a quarter of the budget, the variants in turn) is the
  better clock: its sustained seconds per iteration replace the pilot's for each stage it reached, and
  a stage it did not reach keeps the pilot's ratio to the other (both were timed within the same minute).
  Steps already taken keep the learning rate they were taken with; the cosine horizon moves to the new
  plan (at a quarter of the way, the two horizons' rates differ by a few per cent).

  `replicas` are (label, progress entry, workdir) of one variant's runs (its seeds, or the variant alone),
  which compute the same thing: their first rounds are pooled into one speed and all get one plan, so
  that they differ by their seed and not by their step counts as well (planned one by one, three replicas
  of one variant got 5,341–5,861 steps from first rounds timed 0.111–0.123 s per iteration).
  """
  todo = [(label, entry, workdir) for label, entry, workdir in replicas if "initial_plan" not in entry]
  if not todo:
    return
  totals = {}  # stage → [seconds, steps] over the replicas' first rounds
  for _, _, workdir in todo:
    windows = training_windows(workdir / "metrics.jsonl", config.train.batch_size, clock)[1:]  # [0]: compilation
    for w in windows:
      total = totals.setdefault(f"stage{w['stage']}", [0.0, 0])
      total[0] += w["seconds"]
      total[1] += w["steps"]
  measured = {stage: seconds / steps for stage, (seconds, steps) in totals.items() if steps}
  if not measured:
    return
  pilot = todo[0][1]["seconds"]  # one pilot times a variant's replicas
  seconds = dict(measured)
  if "stage2" not in seconds:
    seconds["stage2"] = seconds["stage1"] * pilot["stage2"] / pilot["stage1"]
  if "stage1" not in seconds:
    seconds["stage1"] = seconds["stage2"] * pilot["stage1"] / pilot["stage2"]
  plan = plan_steps(config, seconds, budget_s)
  done = todo[0][1]["rounds"][0]["steps_to"]  # the replicas' first rounds ran to one step (one initial plan)
  if plan["train.steps"] < done:
    plan = {**plan, "train.steps": done, "train.decay_steps": done,
            "train.stage1_steps": min(plan["train.stage1_steps"], done), "train.checkpoint_every": done}
  for label, entry, _ in todo:
    entry.update(initial_plan=entry["plan"], pilot_seconds=pilot, seconds=seconds, plan=plan)
    print(f"[{label}] first round: {seconds['stage1']:.3f} s/iter stage 1 (pilot {pilot['stage1']:.3f}) "
          f"→ {plan['train.steps']} steps ({plan['train.stage1_steps']} in stage 1)", flush=True)


def _flag(key: str, value) -> str:
  if isinstance(value, (tuple, list)):
    value = "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
  return f"--config.{key}={value}"


def run(args) -> int:
  from faceinpaint_jax.config import load_config_file
  from faceinpaint_jax.evaluate import MODEL, evaluate

  base = load_config_file(args.config)
  variants = with_seeds(parse_variants(args.variants), args.seeds, int(base.train.seed))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  budget_s = args.budget_minutes * 60.0
  import jax

  from faceinpaint_jax.cli import use_compilation_cache
  use_compilation_cache(base)

  results_path = out / "results.json"
  results = json.loads(results_path.read_text()) if results_path.exists() else {}
  results.setdefault("machine", {"cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                                 "device": jax.devices()[0].device_kind})
  if results.get("clock", "wall") != args.clock and results.get("training"):
    raise UserError(f"{out} was planned with --clock {results.get('clock', 'wall')}: rerun with it, "
                    f"or use another --out")
  results.update(config=os.path.abspath(args.config), budget_minutes=args.budget_minutes, clock=args.clock)
  rows = results.setdefault("variants", {})
  progress = results.setdefault("training", {})
  save = lambda: results_path.write_text(json.dumps(results, indent=2))
  configs = {label: apply_overrides(base, overrides) for label, _, overrides in variants}
  pending = []
  for label, description, overrides in variants:
    if label in rows and (out / _dirname(label) / "eval" / "report.json").exists():
      print(f"[{label}] done already; skipping (delete {out / _dirname(label)} to redo)", flush=True)
    else:
      if label in rows or (progress.get(label, {}).get("rounds") and not (out / _dirname(label)).exists()):
        rows.pop(label, None)  # its results or its run were deleted to redo it: plan it anew
        progress.pop(label, None)
      pending.append((label, description, overrides))

  # 1. Pilots, all before any training and in alternating order: each variant's speed is measured in
  # the same stretch of time as the others', so a machine whose speed drifts plans them all alike.
  # The replicas of one variant (--seeds) compute the same thing at the same speed: the first of them
  # is timed for all.
  first_replica = {}
  timed_by = {label: first_replica.setdefault(_variant_of(label), label) for label, _, _ in variants}
  for round_index in range(args.pilot_rounds):
    order = pending if round_index % 2 == 0 else pending[::-1]
    for label, _, _ in order:
      if "plan" in progress.setdefault(label, {}):
        continue
      timer = timed_by[label]
      pilots = progress.setdefault(timer, {}).setdefault("pilots", [])
      if len(pilots) > round_index:
        continue
      print(f"[{timer}] timing a pilot run ({round_index + 1}/{args.pilot_rounds}) ...", flush=True)
      pilots.append(pilot_speeds(configs[timer], out / "pilot", args.pilot_steps, args.clock))
      save()
  for label, _, _ in pending:
    entry = progress[label]
    if "plan" not in entry:
      entry["pilots"] = list(progress[timed_by[label]]["pilots"])
      # The fastest of a variant's pilots: what slows a machine (other load, a neighbour on the host)
      # only ever adds time, and the interleaved rounds below then expose every variant to it alike.
      entry["seconds"] = {k: float(np.min([t[k] for t in entry["pilots"]])) for k in ("stage1", "stage2")}
      entry["plan"] = plan_steps(configs[label], entry["seconds"], budget_s)
      entry["rounds"] = []
      save()
    print(f"[{label}] {entry['seconds']['stage1']:.3f} s/iter stage 1, {entry['seconds']['stage2']:.3f} s/iter "
          f"stage 2 → {entry['plan']['train.steps']} steps ({entry['plan']['train.stage1_steps']} in stage 1)",
          flush=True)

  # 2. Training in rounds: each variant advances by a 1/rounds share of its planned steps in turn (the
  # order reversed every other round), so drift in the machine's speed falls on every variant alike.
  # A chunk resumes from the previous chunk's checkpoint (train.decay_steps fixes the schedule's horizon
  # at the planned steps, so chunks of one plan are bitwise one uninterrupted run). After the first
  # round each variant is planned again from that round's own speed, one plan for its replicas (_replan).
  for round_index in range(args.rounds):
    order = pending if round_index % 2 == 0 else pending[::-1]
    for label, _, overrides in order:
      entry = progress[label]
      if len(entry["rounds"]) > round_index:
        continue
      plan = entry["plan"]
      target = math.ceil(plan["train.steps"] * (round_index + 1) / args.rounds)
      workdir = out / _dirname(label)
      if round_index == 0 and workdir.exists():
        shutil.rmtree(workdir)  # a chunk of an earlier, unfinished plan
      flags = [_flag(k, v) for k, v in {**overrides, **plan, "train.steps": target}.items()]
      command = [sys.executable, str(REPO / "launch.py"), f"--config={os.path.abspath(args.config)}",
                 f"--workdir={workdir}", *flags]
      print(f"[{label}] round {round_index + 1}/{args.rounds}: training to step {target} ...", flush=True)
      start = time.perf_counter()
      code = subprocess.call(command, stdout=subprocess.DEVNULL if not args.verbose else None)
      wall_s = time.perf_counter() - start
      if code:
        raise UserError(f"variant {label}: training exited with code {code} ({' '.join(command)})")
      windows = training_windows(workdir / "metrics.jsonl", configs[label].train.batch_size, args.clock)
      loop_s = sum(w["seconds"] for w in windows) - sum(r["loop_seconds"] for r in entry["rounds"])
      loop_wall_s = sum(w["wall_seconds"] for w in windows) - sum(map(_loop_wall_seconds, entry["rounds"]))
      entry["rounds"].append({"steps_to": target, "loop_seconds": loop_s, "loop_wall_seconds": loop_wall_s,
                              "wall_seconds": wall_s})
      save()
    if round_index == 0 and args.rounds > 1:
      by_variant = {}
      for label, _, _ in pending:
        by_variant.setdefault(_variant_of(label), []).append((label, progress[label], out / _dirname(label)))
      for replicas in by_variant.values():
        _replan(replicas, configs[replicas[0][0]], budget_s, args.clock)
      save()

  # 3. Evaluation, the same held-out faces and masks for every variant.
  for label, description, overrides in pending:
    entry, config = progress[label], configs[label]
    workdir = out / _dirname(label)
    plan, seconds = entry["plan"], entry["seconds"]
    loop_s = sum(r["loop_seconds"] for r in entry["rounds"])
    per_round = ", ".join(f"{r['loop_seconds']:.0f}" for r in entry["rounds"])
    print(f"[{label}] trained in {loop_s:.0f} s (rounds: {per_round}); evaluating ...", flush=True)
    report = evaluate(str(workdir), args.data, "center", args.num, str(workdir / "eval"),
                      cache_dir=config.data.cache_dir, fid=not args.no_fid)
    metrics = report["methods"][MODEL]
    batch = config.train.batch_size
    rows[label] = {
        "description": description, "overrides": {k: v for k, v in overrides.items()},
        "variant": _variant_of(label), "seed": int(config.train.seed),
        "steps": plan["train.steps"], "stage1_steps": plan["train.stage1_steps"],
        "seconds_per_iteration": seconds, "pilot_seconds_per_iteration": entry["pilots"],
        "initial_steps": entry.get("initial_plan", plan)["train.steps"],
        "images_per_sec_stage1": batch / seconds["stage1"], "images_per_sec_stage2": batch / seconds["stage2"],
        "train_seconds": sum(r["wall_seconds"] for r in entry["rounds"]), "train_loop_seconds": loop_s,
        "train_loop_wall_seconds": sum(map(_loop_wall_seconds, entry["rounds"])),
        "rounds": entry["rounds"], "images_seen": plan["train.steps"] * batch,
        "psnr_hole": metrics["psnr_hole"], "ssim": metrics["ssim"], "ssim_hole": metrics["ssim_hole"],
        "lpips": metrics["lpips"], "psnr": metrics["psnr"], "attention_iou": report["attention_iou"],
        "fid": metrics.get("fid"), "kid": metrics.get("kid"), "kid_std": metrics.get("kid_std"),
        "telea_psnr_hole": report["methods"]["opencv_telea"]["psnr_hole"]
        if "opencv_telea" in report["methods"] else None,
    }
    save()
    print(f"[{label}] hole PSNR {metrics['psnr_hole']:.2f}, SSIM {metrics['ssim']:.4f}, "
          f"LPIPS {metrics['lpips']:.4f}", flush=True)
  (out / "results.md").write_text(markdown(results))
  _grid(out, [label for label, _, _ in variants], args.rows)
  print((out / "results.md").read_text())
  return 0


def _loop_wall_seconds(training_round: dict) -> float:
  # Rounds recorded before both clocks were kept were timed by the wall clock only.
  return training_round.get("loop_wall_seconds", training_round["loop_seconds"])


def _dirname(label: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")


def markdown(results: dict) -> str:
  m = results["machine"]
  clock = results.get("clock", "wall")
  unit = "wall" if clock == "wall" else "CPU time over the cores"
  lines = [f"Budget {results['budget_minutes']} min of training per variant by the {clock} clock (steps "
           f"planned from each variant's sustained speed in pilot runs; variants trained in interleaved "
           f"rounds; 'trained' is the training loop's own time, compilation included, by that clock and "
           f"by the wall; img/s by the {clock} clock); config `{results['config']}`; "
           f"{m['backend']} ({m['device']}, {m['cpu_count']} cores).", "",
           "| variant | hole PSNR | SSIM | SSIM hole | LPIPS | KID | attention IoU | img/s stage 1 "
           f"| img/s stage 2 | steps (stage 1) | images seen | trained, {unit} (s) | trained, wall (s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for label, r in results["variants"].items():
    iou = "—" if r["attention_iou"] is None else f"{r['attention_iou']:.3f}"
    kid = "—" if r.get("kid") is None else f"{r['kid']:.4f} ± {r['kid_std']:.4f}"
    lines.append(f"| {label} | {r['psnr_hole']:.2f} | {r['ssim']:.4f} | {r['ssim_hole']:.4f} | {r['lpips']:.4f} "
                 f"| {kid} | {iou} | {r['images_per_sec_stage1']:.1f} | {r['images_per_sec_stage2']:.1f} "
                 f"| {r['steps']} ({r['stage1_steps']}) | {r['images_seen']} "
                 f"| {r.get('train_loop_seconds', r['train_seconds']):.0f} "
                 f"| {r.get('train_loop_wall_seconds', r.get('train_loop_seconds', r['train_seconds'])):.0f} |")
  lines += seed_summary(results["variants"])
  lines += ["", "Variants:", ""]
  lines += [f"- `{label}`: {r['description']}" for label, r in results["variants"].items()]
  return "\n".join(lines) + "\n"


def seed_summary(rows: dict) -> list[str]:
  """Markdown lines: each variant's mean ± sample standard deviation over its seeds, and the difference
  of its means from the first variant's; nothing when no variant ran with more than one seed."""
  groups = {}
  for label, r in rows.items():
    groups.setdefault(r.get("variant", _variant_of(label)), []).append(r)
  if all(len(g) == 1 for g in groups.values()):
    return []
  stat = lambda g, key: np.array([r[key] for r in g if r.get(key) is not None], np.float64)
  spread = lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
  fmt = lambda x, digits: "—" if not len(x) else f"{x.mean():.{digits}f} ± {spread(x):.{digits}f}"
  reference = {key: stat(next(iter(groups.values())), key).mean() for key in ("psnr_hole", "lpips")}
  lines = ["", f"Over seeds (mean ± sample standard deviation; Δ = difference of the means from "
               f"`{next(iter(groups))}`):", "",
           "| variant | seeds | hole PSNR | Δ hole PSNR | SSIM | LPIPS | Δ LPIPS | KID | steps |",
           "|---|---|---|---|---|---|---|---|---|"]
  for variant, g in groups.items():
    seeds = ", ".join(str(r.get("seed", r.get("overrides", {}).get("train.seed", "?"))) for r in g)
    d_psnr = stat(g, "psnr_hole").mean() - reference["psnr_hole"]
    d_lpips = stat(g, "lpips").mean() - reference["lpips"]
    lines.append(f"| {variant} | {seeds} | {fmt(stat(g, 'psnr_hole'), 2)} | {d_psnr:+.2f} | {fmt(stat(g, 'ssim'), 4)} "
                 f"| {fmt(stat(g, 'lpips'), 4)} | {d_lpips:+.4f} | {fmt(stat(g, 'kid'), 4)} "
                 f"| {fmt(stat(g, 'steps'), 0)} |")
  return lines


def _grid(out: pathlib.Path, labels: list[str], rows: int):
  from PIL import Image

  from faceinpaint_jax.evaluate import MODEL
  from faceinpaint_jax.visualize import image_grid, save_png
  first = out / _dirname(labels[0]) / "eval" / "completions"
  names = sorted(p.name for p in (first / "ground_truth").iterdir())[:rows]
  load = lambda path: np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1
  panels = [[load(first / "damaged" / n)]
            + [load(out / _dirname(label) / "eval" / "completions" / MODEL / n) for label in labels]
            + [load(first / "ground_truth" / n)] for n in names]
  save_png(image_grid(panels), out / "grid.png")
  (out / "grid_columns.txt").write_text("damaged, " + ", ".join(labels) + ", ground truth\n")


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m faceinpaint_jax.ablate", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", required=True)
  ap.add_argument("--budget-minutes", type=float, required=True, help="training time per variant")
  ap.add_argument("--variants", default="full,baseline")
  ap.add_argument("--out", required=True)
  ap.add_argument("--data", default="sample", help="held-out faces to evaluate on (the test split)")
  ap.add_argument("--num", type=int, default=100)
  ap.add_argument("--rows", type=int, default=8, help="faces in the comparison grid")
  ap.add_argument("--verbose", action="store_true", help="show each training run's log")
  ap.add_argument("--no-fid", action="store_true", help="skip FID/KID in each variant's evaluation")
  ap.add_argument("--pilot-steps", type=int, default=60,
                  help="steps per stage of the timing run that plans each variant's steps")
  ap.add_argument("--pilot-rounds", type=int, default=2,
                  help="pilot runs per variant, in alternating order; the fastest plans the variant's steps")
  ap.add_argument("--rounds", type=int, default=4,
                  help="interleaved training chunks per variant (1 = each variant trained in one go)")
  ap.add_argument("--clock", choices=CLOCKS, default="wall",
                  help="what the budget counts: wall seconds, or CPU seconds over the usable cores (for "
                       "machines whose hypervisor steals time)")
  ap.add_argument("--seeds", type=int, default=1,
                  help="train every variant this many times, with train.seed = the config's seed + 0, 1, …; "
                       "the table adds each variant's mean ± standard deviation over its seeds")
  ap.add_argument("--time-only", action="store_true", help="print each variant's s/iteration and stop")
  args = ap.parse_args(argv)
  if not math.isfinite(args.budget_minutes) or args.budget_minutes <= 0:
    print("error: --budget-minutes must be > 0", file=sys.stderr)
    return 2
  if args.pilot_steps < 3:
    print("error: --pilot-steps must be at least 3", file=sys.stderr)
    return 2
  if args.rounds < 1 or args.pilot_rounds < 1 or args.seeds < 1:
    print("error: --rounds, --pilot-rounds and --seeds must be at least 1", file=sys.stderr)
    return 2
  from faceinpaint_jax.assets import AssetError
  from faceinpaint_jax.config import ConfigError
  from faceinpaint_jax.data import SourceError
  try:
    if args.time_only:
      from faceinpaint_jax.config import load_config_file
      base = load_config_file(args.config)
      for label, _, overrides in parse_variants(args.variants):
        seconds = pilot_speeds(apply_overrides(base, overrides), pathlib.Path(args.out) / "pilot",
                               args.pilot_steps, args.clock)
        print(json.dumps({"variant": label, **{k: round(v, 4) for k, v in seconds.items()}}), flush=True)
      return 0
    return run(args)
  except (UserError, ConfigError, SourceError, AssetError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
