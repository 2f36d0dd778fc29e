"""Images/s of the input pipeline (decode, crop, resize, mask, fill, window) at the config's size.

  python benchmarks/input_pipeline.py --config configs/celeba128.py [--source sample] [--batches 20]
"""

import argparse
import json
import time

import common

from faceinpaint_jax.config import load_config_file
from faceinpaint_jax.data import InputPipeline


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", required=True)
  ap.add_argument("--source", default="sample")
  ap.add_argument("--batches", type=int, default=20)
  ap.add_argument("--workers", type=int, default=None)
  args = ap.parse_args()
  config = load_config_file(args.config)
  config.data.source = args.source
  if args.workers:
    config.data.num_workers = args.workers
  pipeline = InputPipeline(config, process_index=0, process_count=1)
  pipeline.batch(0)  # source scan and first decode out of the timing
  start = time.perf_counter()
  images = sum(len(b["image"]) for _, b in pipeline.iterate(1, 1 + args.batches))
  seconds = time.perf_counter() - start
  pipeline.close()
  print(json.dumps({"benchmark": "input_pipeline", "config": args.config, "source": args.source,
                    "image_size": config.data.image_size, "batch": config.train.batch_size,
                    "workers": config.data.num_workers, "images_per_s": images / seconds,
                    "machine": common.machine()}))


if __name__ == "__main__":
  main()
