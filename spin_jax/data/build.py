"""Builds the TFDS datasets.

    python -m spin_jax.data.build synthetic --data_dir data/tfds --num_train 10000 --workers 2
    python -m spin_jax.data.build spin --data_dir data/tfds --manual_dir /data/spin \
        --datasets h36m,lsp-orig,mpii,lspet,coco,mpi-inf-3dhp [--skip_bad]

A prepared dataset is reused (TFDS keeps finished datasets and restarts unfinished ones). The
synthetic build prints its rate; the SPIN build writes `build_report.json` next to the dataset
with every skipped row and why.
"""

import argparse
import json
import time
from pathlib import Path

import tensorflow_datasets as tfds

from fitting.data_io import write_text_atomic
from spin_jax.data import builders, records, spin_format


def build_synthetic(args) -> Path:
  base = {c.name: c for c in builders.SpinSynthetic.BUILDER_CONFIGS}.get(args.name)
  fields = dict(
    num_train=args.num_train,
    num_validation=args.num_validation,
    num_test=args.num_test,
    resolution=args.resolution,
    fraction_2d_only=args.fraction_2d_only,
    occluder_prob=args.occluder_prob,
    model=args.model or "",
    seed=args.seed,
  )
  fields = {k: v for k, v in fields.items() if v is not None}
  if base is not None and any(getattr(base, k) != v for k, v in fields.items()):
    raise SystemExit(
      f"--name {args.name} is a predefined config; pick another name for custom sizes or settings"
    )
  cfg = base or builders.SyntheticConfig(name=args.name, **fields)
  builder = builders.SpinSynthetic(
    config=cfg, data_dir=args.data_dir, file_format="array_record", num_workers=args.workers
  )
  total = cfg.num_train + cfg.num_validation + cfg.num_test
  t0 = time.perf_counter()
  builder.download_and_prepare()
  dt = time.perf_counter() - t0
  path = builders.dataset_dir(args.data_dir, f"spin_synthetic/{cfg.name}")
  print(f"spin_synthetic/{cfg.name}: {total} examples in {dt:.1f} s ({total / dt:.1f} examples/s)")
  print(f"  -> {path}")
  return path


def build_spin(args) -> list[Path]:
  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  infos = [records.dataset_info(n) for n in names]
  if args.image_root and len(infos) > 1:
    raise SystemExit("--image_root applies to one dataset at a time; build the others separately")
  for info in infos:  # fail before any work if a file is missing
    spin_format.find_annotation_file(Path(args.manual_dir), info)
  out = []
  for info in infos:
    builder = builders.SpinFormat(
      config=info.config,
      data_dir=args.data_dir,
      file_format="array_record",
      image_root=args.image_root,
      skip_bad=args.skip_bad,
    )
    t0 = time.perf_counter()
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    path = builders.dataset_dir(args.data_dir, f"spin_format/{info.config}")
    report = {
      "dataset": info.name,
      "skipped": [{"index": i, "reason": r} for i, r in builder.skipped],
    }
    write_text_atomic(path / "build_report.json", json.dumps(report, indent=1))
    sizes = builders.split_sizes(args.data_dir, f"spin_format/{info.config}")
    print(
      f"spin_format/{info.config}: {sizes} in {time.perf_counter() - t0:.1f} s, "
      f"{len(builder.skipped)} skipped -> {path}"
    )
    for i, reason in builder.skipped[:10]:
      print(f"  skipped row {i}: {reason}")
    out.append(path)
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  sub = ap.add_subparsers(dest="kind", required=True)
  syn = sub.add_parser("synthetic", help="render the synthetic dataset")
  syn.add_argument("--data_dir", required=True)
  syn.add_argument("--name", default="default", help="config name (default, small, or your own)")
  syn.add_argument("--num_train", type=int)
  syn.add_argument("--num_validation", type=int)
  syn.add_argument("--num_test", type=int)
  syn.add_argument("--resolution", type=int, help="person box in pixels (224)")
  syn.add_argument("--fraction_2d_only", type=float)
  syn.add_argument("--occluder_prob", type=float)
  syn.add_argument("--model", help="SMPL .pkl/.npz to render (default: the open model)")
  syn.add_argument("--seed", type=int)
  syn.add_argument("--workers", type=int, default=2, help="rendering processes")
  spin = sub.add_parser("spin", help="SPIN's preprocessed datasets from a manual directory")
  spin.add_argument("--data_dir", required=True)
  spin.add_argument("--manual_dir", required=True, help="holds dataset_extras/*.npz and images")
  spin.add_argument(
    "--datasets", required=True, help="comma-separated SPIN names (h36m, 3dpw, ...)"
  )
  spin.add_argument("--image_root", help="image folder, if not <manual_dir>/<dataset image dir>")
  spin.add_argument("--skip_bad", action="store_true", help="skip and count bad rows")
  args = ap.parse_args(argv)
  return build_synthetic(args) if args.kind == "synthetic" else build_spin(args)


if __name__ == "__main__":
  main()
