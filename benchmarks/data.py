"""Data benchmarks: synthetic build rate and input-pipeline throughput.

    python benchmarks/data.py --data_dir /tmp/bench_tfds [--num 10000] [--workers 2]

Builds `spin_synthetic/bench<num>` (or reuses it) and reports the build rate, then iterates the
augmenting pipeline at batch 64 and reports examples/s for a few thread counts, with and without
part masks. Target (data issue): 10,000 examples at 224 px in under 5 minutes on 2 cores.
"""

import argparse
import os
import time

import jax

from spin_jax.data import build, builders, pipeline


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--num", type=int, default=10_000)
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--batches", type=int, default=40)
  args = ap.parse_args()
  name = f"bench{args.num}"
  print(f"jax {jax.__version__}; {os.cpu_count()} CPU cores")
  try:
    builders.dataset_dir(args.data_dir, f"spin_synthetic/{name}")
    print(f"reusing spin_synthetic/{name} (delete it to time the build)")
  except FileNotFoundError:
    build.main(
      ["synthetic", "--data_dir", args.data_dir, "--name", name, "--num_train", str(args.num)]
      + ["--num_validation", "0", "--num_test", "0", "--workers", str(args.workers)]
    )
  print(f"{'threads':>8} {'masks':>6} {'examples/s':>11}")
  for threads in (1, 2, 4):
    for masks in (False, True):
      opts = pipeline.DataOptions(
        data_dir=args.data_dir,
        datasets=(f"spin_synthetic/{name}",),
        batch_size=64,
        num_threads=threads,
        with_masks=masks,
      )
      it = pipeline.make_iterator(opts, process_index=0, process_count=1)
      next(it)  # start-up
      t0 = time.perf_counter()
      for _ in range(args.batches):
        next(it)
      rate = args.batches * 64 / (time.perf_counter() - t0)
      print(f"{threads:>8} {str(masks):>6} {rate:>11.0f}")


if __name__ == "__main__":
  main()
