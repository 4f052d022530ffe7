"""Builds the TFDS datasets.

    python -m spin_jax.data.build synthetic --data_dir data/tfds --num_train 10000 --workers 2
    python -m spin_jax.data.build spin --data_dir data/tfds --manual_dir /data/spin \
        --datasets h36m,lsp-orig,mpii,lspet,coco,mpi-inf-3dhp [--skip_bad] [--workers 2]
    python -m spin_jax.data.build export --data_dir data/tfds --dataset spin_synthetic/default \
        --split test --out test_keypoints.npz

A prepared dataset is reused (TFDS keeps finished datasets and restarts unfinished ones). The
synthetic build prints its rate; the SPIN build writes `build_report.json` next to the dataset:
the annotation file (name, sha256, number of rows: the range of the records' `index`) and every
skipped row and why; a rebuild of a prepared dataset keeps the skipped rows and refuses an
annotation file that changed. `export` writes a split's keypoints as the fitter's input and
records the file in the dataset's `exports.json` (fits are accepted only for the data they were
made from).
"""

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from smpl_jax.files import file_sha256, write_npz_atomic, write_text_atomic
from smpl_jax.joints import GT24, OPENPOSE
from spin_jax.data import builders, records, spin_format


def build_synthetic(
  data_dir: str,
  name: str = "default",
  *,
  workers: int = 2,
  **settings,
) -> Path:
  """Renders spin_synthetic/<name> into `data_dir` and returns its folder. `settings` are
  `builders.SyntheticConfig` fields (num_train, num_validation, num_test, resolution,
  fraction_2d_only, occluder_prob, model, seed); None keeps the config's or the default."""
  base = {c.name: c for c in builders.SpinSynthetic.BUILDER_CONFIGS}.get(name)
  fields = dict(settings)
  if "model" in fields:
    fields["model"] = fields["model"] or ""
  fields = {k: v for k, v in fields.items() if v is not None}
  if base is not None and any(getattr(base, k) != v for k, v in fields.items()):
    raise SystemExit(
      f"--name {name} is a predefined config; pick another name for custom sizes or settings"
    )
  cfg = base or builders.SyntheticConfig(name=name, **fields)
  builder = builders.SpinSynthetic(
    config=cfg, data_dir=data_dir, file_format="array_record", num_workers=workers
  )
  total = cfg.num_train + cfg.num_validation + cfg.num_test
  t0 = time.perf_counter()
  builder.download_and_prepare()
  dt = time.perf_counter() - t0
  path = builders.dataset_dir(data_dir, f"spin_synthetic/{cfg.name}")
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
    name = f"spin_format/{info.config}"
    ann_path = spin_format.find_annotation_file(Path(args.manual_dir), info)
    identity = {
      "annotation_file": ann_path.name,
      "annotation_sha256": file_sha256(ann_path),
      "num_rows": _count_rows(ann_path, info.name),
    }
    old = _prepared_report(args.data_dir, name)
    if (
      old is not None
      and old.get("annotation_sha256", identity["annotation_sha256"])
      != (identity["annotation_sha256"])
    ):
      path = builders.dataset_dir(args.data_dir, name)
      raise SystemExit(
        f"{name} in {path} was built from another {ann_path.name} (sha256 "
        f"{old['annotation_sha256'][:12]}, now {identity['annotation_sha256'][:12]}): its "
        f"records and row indices would not match the file; delete {path} to rebuild it"
      )
    builder = builders.SpinFormat(
      config=info.config,
      data_dir=args.data_dir,
      file_format="array_record",
      image_root=args.image_root,
      skip_bad=args.skip_bad,
      num_workers=args.workers,
    )
    t0 = time.perf_counter()
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    path = builders.dataset_dir(args.data_dir, name)
    sizes = builders.split_sizes(args.data_dir, name)
    if old is not None:  # already prepared: TFDS reused the records, keep what the build found
      report = {"dataset": info.name} | old | identity
    else:
      report = {"dataset": info.name, **identity}
      report["skipped"] = [{"index": i, "reason": r} for i, r in builder.skipped]
    kept = sum(sizes.values())
    if "skipped" in report and kept + len(report["skipped"]) != identity["num_rows"]:
      raise SystemExit(
        f"{name}: {kept} records + {len(report['skipped'])} skipped rows != "
        f"{identity['num_rows']} rows of {ann_path}; delete {path} to rebuild it"
      )
    write_text_atomic(path / builders.BUILD_REPORT, json.dumps(report, indent=1))
    skipped = report.get("skipped")
    print(
      f"{name}: {sizes} in {time.perf_counter() - t0:.1f} s, "
      f"{'?' if skipped is None else len(skipped)} skipped "
      f"({identity['num_rows']} annotation rows) -> {path}"
    )
    for row in (skipped or [])[:10]:
      print(f"  skipped row {row['index']}: {row['reason']}")
    out.append(path)
  return out


def _count_rows(path: Path, dataset: str) -> int:
  """Rows of a SPIN annotation file (the range of its records' `index`)."""
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
      return len(z["center"])
  except (OSError, ValueError, KeyError) as e:
    raise SystemExit(f"{dataset}: cannot read the rows of {path} ({e})") from e


def _prepared_report(data_dir, name: str) -> dict | None:
  """The build report of an already prepared dataset ({} if it was prepared without one),
  or None when the dataset is not prepared yet."""
  try:
    path = builders.dataset_dir(data_dir, name)
  except FileNotFoundError:
    return None
  report = path / builders.BUILD_REPORT
  return json.loads(report.read_text()) if report.is_file() else {}


def export_keypoints(
  data_dir, name: str, split: str, path: str | Path, rows: str = "openpose"
) -> Path:
  """Writes a prepared split's keypoints as a SPIN npz, the dataset fitter's input: `center`,
  `scale`, `openpose` and, with rows="all", `part`, in the stored crops' pixels; row k is the
  record with index k (rows without a record are zeros). The file's name and sha256 are
  recorded in the dataset's `exports.json`, so that fits made from it are accepted for this
  split (and fits made from anything else are refused)."""
  if rows not in ("openpose", "all"):
    raise ValueError(f"rows={rows!r}: expected 'openpose' or 'all'")
  src = builders.open_source(data_dir, name, split)
  got = {}  # index -> (crop side, margin, keypoints): each record read once
  for k in range(len(src)):
    ex = src[k]
    with Image.open(io.BytesIO(ex["image"])) as im:
      got[int(ex["index"])] = (im.size[0], float(ex["margin"]), ex["keypoints"])
  n = max(got, default=-1) + 1
  center, scale = np.zeros((n, 2), np.float32), np.zeros(n, np.float32)
  part, openpose = np.zeros((n, 24, 3), np.float32), np.zeros((n, 25, 3), np.float32)
  for i, (size, margin, kp) in got.items():
    center[i] = size / 2.0
    scale[i] = size / margin / 200.0
    openpose[i], part[i] = kp[OPENPOSE], kp[GT24]
  arrays = dict(center=center, scale=scale, openpose=openpose)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_npz_atomic(path, **(arrays | {"part": part} if rows == "all" else arrays))
  registry = builders.dataset_dir(data_dir, name) / builders.EXPORTS
  entry = {"file": path.name, "sha256": file_sha256(path), "split": split, "rows": rows}
  known = [e for e in builders.read_json(registry, []) if e["sha256"] != entry["sha256"]]
  write_text_atomic(registry, json.dumps(known + [entry], indent=1))
  return path


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
  spin.add_argument(
    "--workers", type=int, default=1, help="decoding processes (1: in this process)"
  )
  exp = sub.add_parser("export", help="a prepared split's keypoints as the fitter's input npz")
  exp.add_argument("--data_dir", required=True)
  exp.add_argument("--dataset", required=True, help="e.g. spin_synthetic/default")
  exp.add_argument("--split", default="test")
  exp.add_argument("--out", required=True, help="npz to write")
  exp.add_argument(
    "--rows", default="openpose", choices=["openpose", "all"], help="all: also ground truth"
  )
  args = ap.parse_args(argv)
  if args.kind == "export":
    path = export_keypoints(args.data_dir, args.dataset, args.split, args.out, args.rows)
    print(f"wrote {path}; fit it with python -m fitting.cli --input {path} --out FITS.npz")
    return path
  if args.kind == "synthetic":
    keys = ("num_train", "num_validation", "num_test", "resolution", "fraction_2d_only")
    keys += ("occluder_prob", "model", "seed")
    return build_synthetic(
      args.data_dir, args.name, workers=args.workers, **{k: getattr(args, k) for k in keys}
    )
  return build_spin(args)


if __name__ == "__main__":
  main()
