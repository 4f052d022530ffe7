"""SMPLify alone vs HMR-style regression vs SPIN, with 3D labels on a fraction of the training
images and with none ("unpaired"), measured on the synthetic test split.

    python experiments/compare.py --out outputs/compare        # about 50 min on a 2-core CPU

Every method sees the same data: `spin_synthetic/compare` (4,000 training images, each
carrying 3D labels (pose, shape, 3D joints) with probability `--paired` = 0.2 and otherwise
only 2D keypoints; 500 validation and 500 test images with full labels). The trained methods
share the README main job's settings (`experiments/configs/synthetic.py`: small ResNet at
128 px, batch 32, 2,500 steps, lr 1e-4) and differ only in:

* `hmr`: regression without fitting: 2D keypoint loss everywhere, 3D joint, pose and shape
  losses where the image has 3D labels (`fit.run=False`).
* `spin`: SMPLify in the loop (20 + 20 Adam steps from the network's estimate), the best fit
  of each image supervising pose and shape where there is no 3D label; the fits table starts
  from static fits, the dataset fitter's fits of the training images' 2D keypoints, as SPIN's
  code starts from its `static_fits`.
* `hmr_unpaired`, `spin_unpaired`: the same with every 3D label ignored (`data.ignore_3d`);
  HMR's unpaired setting needs its adversarial prior, which this project does not have yet,
  so `hmr_unpaired` is plain 2D reprojection training.
* `spin_mean` (not run unless named in --methods): `spin` with the fits table started at the
  mean pose instead of static fits.
* `smplify_detected`, `smplify_annotated`: the dataset fitter (`python -m fitting.cli`, its
  defaults) on each test image's 2D keypoints, from the prior's mean pose; no network. The
  first sees only the OpenPose-like rows (noisy, some missing or occluded: what a detector
  gives, the setting of SMPLify in the papers); the second also the exact annotated rows, an
  oracle no method has on real test images. Images the fitter cannot fit (too few torso
  joints) keep its start, the mean pose, and count in its error.
* `mean_pose`: the networks' starting estimate, for scale.

All are scored by `spin_jax.eval` (SPIN's protocol: H36M-regressor joints, 14 joints, pelvis
aligned; PVE on the mesh). Writes `results.md`, `results.json` and `comparison.png` in --out.
Each piece is kept on disk when it finishes, and an interrupted run resumes where it stopped
(training from its last checkpoint).
"""

import argparse
import dataclasses
import importlib.util
import io
import json
import time
from pathlib import Path

import jax
import numpy as np

from fitting import data_io
from smpl_jax import files
from spin_jax import eval as eval_lib
from spin_jax import train
from spin_jax.config import TrainConfig, from_config_dict
from spin_jax.data import build, builders

HERE = Path(__file__).resolve().parent
DATASET = "spin_synthetic/compare"

METHODS = {  # name -> (label, fit.run, data.ignore_3d, fits table from static fits)
  "hmr": ("HMR-style regression", False, False, False),
  "spin": ("SPIN (fits table from SMPLify's static fits)", True, False, True),
  "hmr_unpaired": ("HMR-style, unpaired (no 3D labels)", False, True, False),
  "spin_unpaired": ("SPIN, unpaired (no 3D labels)", True, True, True),
  "spin_mean": ("SPIN, fits table from the mean pose", True, False, False),
}
DEFAULT_METHODS = ("hmr", "spin", "hmr_unpaired", "spin_unpaired")


def base_config() -> TrainConfig:
  spec = importlib.util.spec_from_file_location("synthetic_config", HERE / "configs/synthetic.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return from_config_dict(mod.get_config())


def method_config(base: TrainConfig, out: Path, name: str, static: str = "") -> TrainConfig:
  _, fit_run, ignore_3d, _ = METHODS[name]
  data = dataclasses.replace(
    base.data,
    data_dir=str(out / "tfds"),
    train=(DATASET,),
    val=DATASET,
    ignore_3d=ignore_3d,
    build_synthetic=False,
    fits_files=(f"{DATASET}={static}",) if static else (),
  )
  fit = dataclasses.replace(base.fit, run=fit_run)
  return dataclasses.replace(base, workdir=str(out / name), data=data, fit=fit)


def build_data(out: Path, sizes, paired: float, body_model: str, resolution: int | None) -> None:
  try:
    builders.dataset_dir(out / "tfds", DATASET)
    return
  except FileNotFoundError:
    pass
  args = ["synthetic", "--data_dir", str(out / "tfds"), "--name", DATASET.split("/")[1]]
  args += ["--num_train", str(sizes[0]), "--num_validation", str(sizes[1])]
  args += ["--num_test", str(sizes[2]), "--fraction_2d_only", str(1.0 - paired)]
  args += ["--model", body_model] if body_model else []
  args += ["--resolution", str(resolution)] if resolution else []
  build.main(args)


def train_method(cfg: TrainConfig) -> dict:
  """Trains (or resumes) one method; its training wall time in seconds, and whether it resumed
  an interrupted run (whose time then counts from the resumption only)."""
  workdir = Path(cfg.workdir)
  timing = workdir / "timing.json"
  if timing.is_file():
    done = json.loads(timing.read_text())
    if done["steps"] == cfg.steps:
      return done
  resumed = (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir())
  t0 = time.perf_counter()
  train.run(cfg, workdir)
  done = {"steps": cfg.steps, "seconds": time.perf_counter() - t0, "resumed": resumed}
  files.write_text_atomic(timing, json.dumps(done))
  return done


def check_setup(out: Path, setup: dict) -> None:
  """Pieces on disk are reused only for the same data and training settings."""
  path = out / "setup.json"
  if path.is_file():
    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(setup) if old.get(k) != setup.get(k))
    if diff:
      raise SystemExit(
        f"{out} holds results for other settings ({', '.join(diff)} differ); use another "
        "--out, or delete it to start over"
      )
  else:
    files.write_text_atomic(path, json.dumps(setup, indent=1))


SMPLIFY = {  # variant -> (label, keypoint rows it sees)
  "smplify_detected": ("SMPLify alone, detected 2D keypoints", "openpose"),
  "smplify_annotated": ("SMPLify alone, exact annotated 2D keypoints", "all"),
}
STATIC_FITS = "smplify_annotated"  # SPIN's static fits: the fitter on the training keypoints


def smplify_alone(out: Path, split: str, body_model: str, variant: str) -> tuple[Path, dict]:
  """Fits every test image with `python -m fitting.cli` defaults; (fits file, timing)."""
  from fitting import cli

  work = out / variant
  work.mkdir(parents=True, exist_ok=True)
  fits, timing = work / f"{split}_fits.npz", work / f"{split}_timing.json"
  if fits.is_file() and timing.is_file():
    return fits, json.loads(timing.read_text())
  keypoints = work / f"{split}_keypoints.npz"
  build.export_keypoints(out / "tfds", DATASET, split, keypoints, SMPLIFY[variant][1])
  t0 = time.perf_counter()
  args = ["--input", str(keypoints), "--out", str(fits), "--no-progress"]
  cli.main(args + (["--model", body_model] if body_model else []))
  done = {
    "seconds": time.perf_counter() - t0,
    "fitted": int(data_io.read_fits(fits)["success"].sum()),
  }
  files.write_text_atomic(timing, json.dumps(done))
  return fits, done


def fits_table_source(workdir: str, body_model: str) -> eval_lib.Source:
  """The fits table of a SPIN run's newest checkpoint, as estimates for its training images."""
  import jax.numpy as jnp
  import orbax.checkpoint as ocp

  from smpl_jax import rotations
  from spin_jax.data import records

  mngr = ocp.CheckpointManager((Path(workdir) / "checkpoints").absolute())
  step = mngr.latest_step()
  fits = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  fits = fits["state"]["fits"]
  offset = int(np.asarray(fits["offsets"])[records.SYNTHETIC_ID])  # the train split's rows
  pose, betas = np.asarray(fits["pose"]), np.asarray(fits["betas"])

  def estimate(batch):
    rows = offset + np.asarray(batch["index"])
    rot = rotations.aa_to_rotmat(jnp.asarray(pose[rows]).reshape(-1, 24, 3))
    return eval_lib.Estimate(rot, jnp.asarray(betas[rows]), jnp.zeros((len(rows), 3)))

  return eval_lib.Source(f"{Path(workdir).name}_fits@{step}", 64, estimate, body_model)


def mean_pose_source(cfg: TrainConfig) -> eval_lib.Source:
  import jax.numpy as jnp

  from smpl_jax import rotations

  mp = train.mean_params(cfg)
  rot = rotations.rot6d_to_rotmat(jnp.asarray(mp.pose6d).reshape(24, 6))

  def estimate(batch):
    b = len(batch["index"])
    return eval_lib.Estimate(
      jnp.broadcast_to(rot, (b, 24, 3, 3)), jnp.zeros((b, 10)), jnp.zeros((b, 3))
    )

  return eval_lib.Source("mean_pose", cfg.model.img_res, estimate, cfg.body_model)


def write_report(out: Path, rows: list[dict], meta: dict) -> None:
  """results.json, results.md (the table) and comparison.png (the plot)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  head = "| method | 3D labels | MPJPE (mm) | PA-MPJPE (mm) | PVE (mm) | time |"
  lines = [head, "|---|---|---|---|---|---|"]
  for r in rows:
    t = f"{r['seconds'] / 60:.1f} min" if r.get("seconds") is not None else ""
    lines.append(
      f"| {r['label']} | {r['labels3d']} | {r['mpjpe']:.1f} | {r['pa_mpjpe']:.1f} | "
      f"{r['pve']:.1f} | {t} |"
    )
  table = "\n".join(lines) + "\n"
  note = (
    f"\n{meta['count']} test people of `{DATASET}`; {meta['steps']} training steps of batch "
    f"{meta['batch_size']} per network; time = training (networks) or fitting (SMPLify).\n"
  )
  for r in rows:
    if "static_fit_seconds" in r:
      note += (
        f"{r['label']}: fitting the training images first took "
        f"{r['static_fit_seconds'] / 60:.1f} min more.\n"
      )
    if "fits_table" in r:
      f = r["fits_table"]
      note += (
        f"{r['label']}: its fits table on the {f['count']} training images with 3D labels: "
        f"MPJPE {f['mpjpe']:.1f}, PA-MPJPE {f['pa_mpjpe']:.1f} mm.\n"
      )
    if r.get("resumed"):
      note += f"{r['label']}: resumed after an interruption; its time counts from there.\n"
    if "fitted" in r:
      rest = ", the rest keep the start" if r["fitted"] < r["count"] else ""
      note += f"{r['label']}: {r['fitted']} of {r['count']} images fitted{rest}.\n"
  if "static_fits" in meta:
    f = meta["static_fits"]
    note += (
      f"SMPLify's static fits (where the SPIN fits tables start) on the same {f['count']} "
      f"training images: MPJPE {f['mpjpe']:.1f}, PA-MPJPE {f['pa_mpjpe']:.1f} mm.\n"
    )
  files.write_text_atomic(out / "results.md", table + note)
  files.write_text_atomic(out / "results.json", json.dumps({"meta": meta, "rows": rows}, indent=1))

  fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
  x = np.arange(len(rows))
  for off, key, colour in ((-0.2, "mpjpe", "#4c72b0"), (0.2, "pa_mpjpe", "#dd8452")):
    vals = [r[key] for r in rows]
    bars = ax.bar(x + off, vals, 0.4, label=eval_lib.COLUMNS[key], color=colour)
    ax.bar_label(bars, fmt="%.0f", fontsize=7)
  ax.set_xticks(x, [r["name"].replace("_", "\n") for r in rows], fontsize=8)
  ax.set_ylabel("error on the test split (mm)")
  ax.set_title(f"{DATASET} test ({meta['count']} people), lower is better", fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  files.write_bytes_atomic(out / "comparison.png", buf.getvalue())


def run(
  out: Path,
  base: TrainConfig,
  methods=DEFAULT_METHODS,
  sizes=(4000, 500, 500),
  paired: float = 0.2,
  resolution: int | None = None,
  progress: bool = True,
) -> list[dict]:
  out.mkdir(parents=True, exist_ok=True)
  config = {k: v for k, v in dataclasses.asdict(base).items() if k != "workdir"}
  setup = dict(sizes=list(sizes), paired=paired, resolution=resolution, config=config)
  check_setup(out, json.loads(json.dumps(setup)))  # tuples as lists, as read back
  build_data(out, sizes, paired, base.body_model, resolution)
  data_dir = str(out / "tfds")
  rows = []

  def add(name, label, labels3d, source, seconds):
    summary, _ = eval_lib.evaluate(
      source, DATASET, "test", data_dir, batch_size=base.batch_size, progress=progress
    )
    rows.append(dict(name=name, label=label, labels3d=labels3d, seconds=seconds, **summary))
    print(eval_lib.markdown_table([summary]), end="")

  def on_labelled_train_images(source) -> dict:  # the training images whose 3D labels score it
    summary, _ = eval_lib.evaluate(
      source, DATASET, "train", data_dir, batch_size=base.batch_size, progress=progress
    )
    return {k: summary[k] for k in ("count", "mpjpe", "pa_mpjpe")}

  static_used = ""
  for variant, (label, _) in SMPLIFY.items():
    path, done = smplify_alone(out, "test", base.body_model, variant)
    fits = eval_lib.fits_source(path, base.body_model, base.model.img_res)
    add(variant, label, "none", fits, done["seconds"])
    rows[-1]["fitted"] = done["fitted"]
  for name in methods:
    static, static_done = "", {}
    if METHODS[name][3]:
      path, static_done = smplify_alone(out, "train", base.body_model, STATIC_FITS)
      static = static_used = str(path)
    cfg = method_config(base, out, name, static)
    done = train_method(cfg)
    labels3d = "none" if cfg.data.ignore_3d else f"{paired:.0%} of images"
    add(name, METHODS[name][0], labels3d, eval_lib.checkpoint_source(cfg.workdir), done["seconds"])
    rows[-1]["resumed"] = done.get("resumed", False)
    if static_done:
      rows[-1]["static_fit_seconds"] = static_done["seconds"]
    if cfg.fit.run:  # how good the fits supervising the network were, where that can be seen
      table = fits_table_source(cfg.workdir, base.body_model)
      rows[-1]["fits_table"] = on_labelled_train_images(table)
  add("mean_pose", "mean pose (no image)", "", mean_pose_source(base), None)
  meta = dict(
    dataset=DATASET,
    sizes=list(sizes),
    paired=paired,
    steps=base.steps,
    batch_size=base.batch_size,
    count=rows[0]["count"],
    devices=[str(d) for d in jax.devices()],
  )
  if static_used:  # where the SPIN tables started
    fits = eval_lib.fits_source(static_used, base.body_model, base.model.img_res)
    meta["static_fits"] = on_labelled_train_images(fits)
  write_report(out, rows, meta)
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--out", default="outputs/compare")
  ap.add_argument("--paired", type=float, default=0.2, help="fraction with 3D labels (0.2)")
  ap.add_argument("--steps", type=int, help="training steps per network (config: 2500)")
  ap.add_argument(
    "--methods",
    default=",".join(DEFAULT_METHODS),
    help=f"comma-separated, of {','.join(METHODS)}",
  )
  args = ap.parse_args(argv)
  base = base_config()
  if args.steps:
    base = dataclasses.replace(base, steps=args.steps)
  methods = tuple(m for m in args.methods.split(",") if m)
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise SystemExit(f"unknown method(s) {unknown}; known: {list(METHODS)}")
  t0 = time.perf_counter()
  run(Path(args.out), base, methods, paired=args.paired)
  print((Path(args.out) / "results.md").read_text())
  print(f"total {(time.perf_counter() - t0) / 60:.1f} min; plot: {Path(args.out)}/comparison.png")


if __name__ == "__main__":
  from absl import logging

  logging.set_verbosity(logging.WARNING)
  main()
