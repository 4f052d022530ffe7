"""Data benchmarks: build rates (synthetic renders, SPIN's format) and input throughput.

    python benchmarks/data.py --data_dir /tmp/bench_tfds [--parts synthetic,spin,pipeline]
        [--num 10000] [--workers 2] [--spin_rows 20000] [--batches 40]

* synthetic: builds `spin_synthetic/bench<num>` (or reuses it), reports the build rate, then
  iterates the augmenting pipeline at batch 64 for a few thread counts, with and without part
  masks. Target: 10,000 examples at 224 px in under 5 minutes on 2 cores.
* spin: writes a `--spin_rows`-row SPIN-format h36m file with synthetic images (320 x 240
  JPEGs, one per 10 rows, person box 200 px: stored crops of 300 source px at 336 px) and
  builds it with `--workers` 1 and 2, reporting rows/s (both give the same records).
* pipeline: SPIN's augmentation at 224 px, batch 64, over that build, with 0, 1 and 2 grain
  worker processes (`DataOptions.num_processes`); examples/s and the per-core rate (examples
  per CPU-second, this process and its workers). Target: >= 500 examples/s per core.
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import jax
import numpy as np
import psutil
from PIL import Image

from spin_jax.data import build, builders, pipeline

ROWS_PER_IMAGE = 10


def synthetic(args):
  name = f"bench{args.num}"
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
      rate, _ = _throughput(opts, args.batches)
      print(f"{threads:>8} {str(masks):>6} {rate:>11.0f}")


def write_spin_manual(root: Path, rows: int, seed: int = 0) -> None:
  """A SPIN-format h36m annotation file of `rows` rows and its images (see the docstring)."""
  rng = np.random.default_rng(seed)
  images = root / "h36m" / "images"
  images.mkdir(parents=True, exist_ok=True)
  (root / "dataset_extras").mkdir(exist_ok=True)
  num_images = -(-rows // ROWS_PER_IMAGE)
  for k in range(num_images):  # smooth blobs plus grain: JPEG costs like a photo's
    blobs = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((320, 240))
    grain = rng.normal(0, 12, (240, 320, 3))
    pixels = np.clip(np.asarray(blobs, np.float64) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(images / f"{k:06d}.jpg", quality=90)
  centers = np.array([160.0, 120.0]) + rng.uniform(-20, 20, (rows, 2))
  part = np.zeros((rows, 24, 3), np.float32)
  part[:, :, :2] = centers[:, None] + rng.uniform(-90, 90, (rows, 24, 2))
  part[:, :, 2] = 1
  np.savez(
    root / "dataset_extras" / "h36m_train.npz",
    imgname=np.array([f"images/{i // ROWS_PER_IMAGE:06d}.jpg" for i in range(rows)]),
    center=centers.astype(np.float32),
    scale=np.full(rows, 1.0, np.float32),
    part=part,
    pose=rng.normal(scale=0.3, size=(rows, 72)).astype(np.float32),
    shape=rng.normal(size=(rows, 10)).astype(np.float32),
    S=np.concatenate([rng.normal(size=(rows, 24, 3)), np.ones((rows, 24, 1))], 2).astype(
      np.float32
    ),
  )


def spin(args) -> str:
  """Times SPIN-format builds with 1 and 2 workers; returns the data_dir of the last."""
  manual = Path(args.data_dir) / f"spin_manual{args.spin_rows}"
  if not (manual / "dataset_extras" / "h36m_train.npz").is_file():
    t0 = time.perf_counter()
    write_spin_manual(manual, args.spin_rows)
    print(f"wrote {args.spin_rows} SPIN rows in {time.perf_counter() - t0:.1f} s -> {manual}")
  out = None
  for workers in (1, 2):
    out = Path(args.data_dir) / f"spin_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = _cpu_seconds_joined(), time.perf_counter()
    build.main(
      ["spin", "--data_dir", str(out), "--manual_dir", str(manual), "--datasets", "h36m"]
      + ["--workers", str(workers)]
    )
    dt, cpu = time.perf_counter() - t0, _cpu_seconds_joined() - c0
    print(
      f"spin build, {workers} worker(s): {args.spin_rows / dt:.0f} rows/s ({dt:.1f} s, "
      f"{args.spin_rows / cpu:.0f} rows per CPU-second, {cpu / dt:.2f} cores busy)"
    )
  return str(out)


def _cpu_seconds_joined() -> float:
  """CPU seconds of this process and of its finished (joined) child processes."""
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def _cpu_seconds() -> float:
  """CPU seconds of this process and of its live child processes."""
  me = psutil.Process()
  total = 0.0
  for p in [me, *me.children(recursive=True)]:
    try:
      t = p.cpu_times()
      total += t.user + t.system
    except psutil.NoSuchProcess:
      pass
  return total


def _throughput(opts: pipeline.DataOptions, batches: int) -> tuple[float, float]:
  """(examples/s, examples per CPU-second) over `batches` batches after a start-up batch."""
  it = pipeline.make_iterator(opts, process_index=0, process_count=1)
  for _ in range(2 + opts.num_processes):  # start-up: workers spawned, buffers filled
    next(it)
  c0, t0 = _cpu_seconds(), time.perf_counter()
  for _ in range(batches):
    next(it)
  dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
  if hasattr(it, "close"):
    it.close()
  del it
  n = batches * opts.batch_size
  return n / dt, n / max(cpu, 1e-9)


def throughput(args, data_dir: str) -> None:
  print(f"SPIN augmentation at 224 px, batch 64, {os.cpu_count()} cores")
  print(f"{'processes':>9} {'threads':>7} {'examples/s':>10} {'per core':>9} {'cores busy':>10}")
  for processes, threads in ((0, 1), (0, 2), (1, 2), (2, 1), (2, 2)):
    opts = pipeline.DataOptions(
      data_dir=data_dir,
      datasets=("spin_format/h36m",),
      batch_size=64,
      num_threads=threads,
      num_processes=processes,
    )
    rate, per_cpu = _throughput(opts, args.batches)
    print(f"{processes:>9} {threads:>7} {rate:>10.0f} {per_cpu:>9.0f} {rate / per_cpu:>10.2f}")


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--parts", default="synthetic,spin,pipeline")
  ap.add_argument("--num", type=int, default=10_000, help="synthetic examples")
  ap.add_argument("--workers", type=int, default=2, help="synthetic render processes")
  ap.add_argument("--spin_rows", type=int, default=20_000)
  ap.add_argument("--batches", type=int, default=40)
  args = ap.parse_args()
  parts = set(args.parts.split(","))
  print(f"jax {jax.__version__}; {os.cpu_count()} CPU cores")
  if "synthetic" in parts:
    synthetic(args)
  data_dir = str(Path(args.data_dir) / "spin_w2")
  if "spin" in parts:
    data_dir = spin(args)
  if "pipeline" in parts:
    throughput(args, data_dir)


if __name__ == "__main__":
  main()
