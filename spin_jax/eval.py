"""Evaluates a trained regressor, or a file of fits, on a 3D benchmark (SPIN_SPEC 9).

    python -m spin_jax.eval --workdir outputs/train --dataset spin_synthetic/main --split test
    python -m spin_jax.eval --workdir runs/spin --dataset spin_format/h36m_p2 --data_dir data/tfds
    python -m spin_jax.eval --fits fits/pw3d.npz --dataset spin_format/pw3d --models data/smpl
    python -m spin_jax.eval --spin_checkpoint data/model_checkpoint.pt \
      --body_model data/smpl/SMPL_NEUTRAL.pkl --dataset spin_format/pw3d --models data/smpl

SPIN's protocol: the prediction's joints come from its mesh through the Human3.6M regressor
(17 joints), minus that regressor's pelvis, reduced to SPIN's 14 evaluation joints (17 for
MPI-INF-3DHP). The ground truth is the dataset's root-centred 3D joints (Human3.6M protocols 1
and 2, MPI-INF-3DHP), or, where the dataset has SMPL parameters instead (3DPW, synthetic
data), the same regressor on the ground-truth mesh, from the gendered models for 3DPW.

Metrics, averaged over people: MPJPE and PA-MPJPE (after a per-person similarity Procrustes) in
mm, PVE in mm where the ground truth is a mesh (both meshes translated to put their pelvis at
the origin), and for MPI-INF-3DHP PCK at 150 mm and AUC over 0-150 mm in %, on root-centred
("abs") and Procrustes-aligned ("pa") joints.

Outputs, in --out (default <workdir>/eval, or beside the fits file):
`<dataset>_<split>.json` (the metrics), `.md` (the table) and `_predictions.npz` (per person:
index, 17 or 14 predicted joints, pose, betas, camera translation and errors; MPI-INF-3DHP's
official MATLAB evaluation reads joints from such a file).
"""

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import smpl_jax
from fitting import data_io
from smpl_jax import camera, files, rotations
from smpl_jax.joints import H36M_TO_J14, H36M_TO_J17, J24_TO_J14, J24_TO_J17
from spin_jax import fits as fits_lib
from spin_jax import metrics
from spin_jax.data import pipeline, records

THREE_D_SETS = ("h36m-p1", "h36m-p2", "3dpw", "mpi-inf-3dhp-test")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How one evaluation set is scored."""

  pred_joints: tuple[int, ...]  # rows of the H36M regressor's 17 joints
  gt_joints: tuple[int, ...]  # rows of the dataset's 24 joints (unused with gt_from_smpl)
  gt_from_smpl: bool  # ground-truth joints from the ground-truth mesh
  gendered: bool  # that mesh from the male / female model by the example's gender
  pck: bool  # also PCK / AUC


def protocol_for(dataset: str) -> Protocol:
  """The protocol of a prepared TFDS dataset name ('spin_format/h36m_p2', 'spin_synthetic/x')."""
  builder, _, config = dataset.partition("/")
  if builder == "spin_synthetic":
    return Protocol(H36M_TO_J14, J24_TO_J14, gt_from_smpl=True, gendered=False, pck=False)
  if builder != "spin_format":
    raise ValueError(f"{dataset!r} is not 'spin_format/<config>' or 'spin_synthetic/<config>'")
  name = records.dataset_info(config).name
  if name not in THREE_D_SETS:
    raise ValueError(
      f"{dataset!r} has no 3D evaluation in SPIN's protocol; the 3D sets are "
      f"{', '.join(THREE_D_SETS)} (LSP's segmentation evaluation is not implemented)"
    )
  if name == "3dpw":
    return Protocol(H36M_TO_J14, J24_TO_J14, gt_from_smpl=True, gendered=True, pck=False)
  if name == "mpi-inf-3dhp-test":
    return Protocol(H36M_TO_J17, J24_TO_J17, gt_from_smpl=False, gendered=False, pck=True)
  return Protocol(H36M_TO_J14, J24_TO_J14, gt_from_smpl=False, gendered=False, pck=False)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Estimate:
  """A batch of body estimates: rotation matrices (B, 24, 3, 3), betas (B, 10) and the camera
  translation (B, 3) in SPIN's 224 px frame (focal 5000)."""

  rotmat: jax.Array
  betas: jax.Array
  cam_t: jax.Array


@dataclasses.dataclass(frozen=True)
class Source:
  """What is evaluated: a name, the input resolution, and batch -> Estimate."""

  name: str
  img_res: int
  estimate: Callable[[dict], Estimate]
  body_model: str = ""  # the neutral model the estimates belong to; "" = the open model
  # (data_dir, dataset, split) -> None, or raises when the source is not for that data
  check: Callable[[str, str, str], None] | None = None


# -- sources --------------------------------------------------------------------------------------


def _strip_values(tree):
  """Orbax restores nnx variables as {'value': array}; the arrays themselves."""
  if isinstance(tree, dict):
    if set(tree) == {"value"}:
      return tree["value"]
    return {k: _strip_values(v) for k, v in tree.items()}
  return tree


def load_checkpoint(workdir: str | Path, step: int | None = None):
  """(TrainConfig, eval graphdef, params, rest, step) of a training run's checkpoint."""
  import orbax.checkpoint as ocp
  from flax import nnx

  from spin_jax.config import from_config_dict
  from spin_jax.model import Regressor, load_mean_params, open_mean_params

  workdir = Path(workdir)
  cfg_path = workdir / "config.json"
  if not cfg_path.is_file():
    raise FileNotFoundError(f"{cfg_path} is missing: --workdir must be a training run's folder")
  cfg = from_config_dict(json.loads(cfg_path.read_text()))
  mngr = ocp.CheckpointManager((workdir / "checkpoints").absolute())
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise ValueError(f"no checkpoint for step {step} in {workdir / 'checkpoints'}; has {steps}")
  got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  mp = load_mean_params(cfg.model.mean_params) if cfg.model.mean_params else open_mean_params()
  model = nnx.eval_shape(
    lambda: Regressor(mp, cfg.model.backbone, cfg.model.num_iters, rngs=nnx.Rngs(0))
  )
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = _filled(params, _strip_values(got["params"]), "params")
  saved_rest = _strip_values(got["rest"])
  rest = _filled(rest, saved_rest, "rest", optional=True)
  return cfg, graphdef, params, rest, int(step)


def _filled(template, saved: dict, what: str, optional: bool = False):
  """`template` (an abstract nnx.State) with every leaf taken from the restored dict."""
  from flax import nnx

  flat = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(saved):
    flat[tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)] = leaf

  def fill(path, abstract):
    key = tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    key = key[:-1] if key and key[-1] == "value" else key
    if key in flat:
      value = flat[key]
      if value.shape != abstract.shape:
        raise ValueError(
          f"checkpoint {what}{list(key)} has shape {value.shape}, the model {abstract.shape}: "
          "was it trained with another backbone?"
        )
      return value if value.dtype == abstract.dtype else jnp.asarray(value, abstract.dtype)
    if optional and jax.dtypes.issubdtype(abstract.dtype, jax.dtypes.prng_key):
      return jax.random.key(0)  # dropout RNG state: unused in eval mode
    if optional and key and key[-1] == "count":
      return jnp.zeros(abstract.shape, abstract.dtype)
    raise ValueError(f"checkpoint has no {what}{list(key)}: it does not match this model")

  out = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(template))
  nnx.replace_by_pure_dict(template, out)
  return template


def checkpoint_source(workdir: str | Path, step: int | None = None) -> Source:
  from flax import nnx

  from spin_jax.model import normalize_images

  cfg, graphdef, params, rest, step = load_checkpoint(workdir, step)

  @jax.jit
  def predict(params, rest, images):
    pred = nnx.merge(graphdef, params, rest, copy=True)(normalize_images(images))
    return Estimate(pred.rotmat, pred.betas, camera.weak_perspective_to_translation(pred.cam))

  return Source(
    name=f"{Path(workdir).name}@{step}",
    img_res=cfg.model.img_res,
    estimate=lambda batch: predict(params, rest, batch["image"]),
    body_model=cfg.body_model,
  )


def spin_checkpoint_source(path: str | Path, body_model: str) -> Source:
  """SPIN's released `model_checkpoint.pt` (needs torch; `spin_jax.spin_files`) as the ResNet-50
  regressor at 224 px. Its estimates are of SMPL's neutral model, so `body_model` is required."""
  from flax import nnx

  from spin_jax import spin_files
  from spin_jax.model import normalize_images

  if not body_model:
    raise ValueError(
      "--spin_checkpoint needs --body_model (SMPL's neutral model, e.g. SMPL_NEUTRAL.pkl): "
      "SPIN's network predicts that model's pose and betas, which mean something else in the "
      "open model"
    )
  graphdef, params, rest = spin_files.spin_regressor(path)

  @jax.jit
  def predict(params, rest, images):
    pred = nnx.merge(graphdef, params, rest, copy=True)(normalize_images(images))
    return Estimate(pred.rotmat, pred.betas, camera.weak_perspective_to_translation(pred.cam))

  return Source(
    name=Path(path).stem,
    img_res=224,
    estimate=lambda batch: predict(params, rest, batch["image"]),
    body_model=body_model,
  )


def fits_source(path: str | Path, body_model: str = "", img_res: int = 224) -> Source:
  """Fits from `python -m fitting.cli` (or any file with its keys), looked up by the row
  `index` that every evaluation example carries. Evaluating them on a split they were not
  made from (another annotation file, by name and sha256) is refused."""
  from spin_jax.data import builders

  fits = data_io.read_fits(path)

  def check(data_dir, dataset, split):
    expected = builders.annotation_identities(data_dir, dataset, split)
    fits_lib.check_made_from(fits, path, expected, f"{dataset}/{split}")

  index = np.asarray(fits["index"], np.int64)
  if len(index) == 0:
    raise ValueError(f"{path} holds no fits")
  if len(np.unique(index)) != len(index):
    raise ValueError(f"{path}: rows repeat an index; fit one dataset file per fits file")
  lookup = np.full(int(index.max()) + 1 if len(index) else 0, -1, np.int64)
  lookup[index] = np.arange(len(index))
  pose = np.asarray(fits["pose"], np.float32)
  betas = np.asarray(fits["betas"], np.float32)[:, :10]
  cam_t = np.asarray(fits["cam_t"], np.float32)
  to_rotmat = jax.jit(lambda p: rotations.aa_to_rotmat(p.reshape(-1, 24, 3)))

  def estimate(batch):
    rows = np.asarray(batch["index"], np.int64)
    needed = np.asarray(batch.get("keep", np.ones(len(rows), bool)), bool)
    rows = np.where(needed, rows, index[0])  # padding and rows beyond --num_examples
    bad = (rows >= len(lookup)) | (lookup[np.minimum(rows, len(lookup) - 1)] < 0)
    if bad.any():
      raise ValueError(
        f"{path} has no fit for dataset row(s) {rows[bad][:5].tolist()}: was it made from "
        "this dataset's annotation file?"
      )
    r = lookup[rows]
    finite = np.all(np.isfinite(pose[r]), 1) & np.all(np.isfinite(betas[r]), 1)
    if not finite.all():
      bad_rows = rows[~finite]
      why = sorted({str(x) for x in fits["reason"][r[~finite]]} - {""}) or ["none recorded"]
      raise ValueError(
        f"{path}: the fits of dataset row(s) {bad_rows[:10].tolist()} are not finite "
        f"(reasons: {'; '.join(why)}); refit those rows (python -m fitting.cli) or drop them "
        "with --num_examples"
      )
    return Estimate(to_rotmat(pose[r]), jnp.asarray(betas[r]), jnp.asarray(cam_t[r]))

  return Source(Path(path).stem, img_res, estimate, body_model, check)


# -- metrics --------------------------------------------------------------------------------------


def regressed(body, rotmat, betas):
  """(vertices (B, V, 3), H36M-regressor joints (B, 17, 3)) of a batch of bodies."""
  out = smpl_jax.forward_batch(body, betas, rotmat[:, :1], rotmat[:, 1:])
  return out.vertices, out.joint_sets["h36m17"]


def batch_errors(proto: Protocol, body, gt_bodies, est: Estimate, batch) -> dict:
  """Per-person errors (metres; PCK / AUC as fractions) of one batch."""
  verts, h36m = regressed(body, est.rotmat, est.betas)
  pelvis = h36m[:, 0]
  pred = (h36m - pelvis[:, None])[:, jnp.asarray(proto.pred_joints)]
  out = {}
  if proto.gt_from_smpl:
    gt_rot = rotations.aa_to_rotmat(batch["pose"].reshape(-1, 24, 3))
    gt_betas = batch["betas"]
    gt_verts, gt_h36m = regressed(gt_bodies["neutral"], gt_rot, gt_betas)
    if proto.gendered:
      for gender, code in (("male", 0), ("female", 1)):
        v, h = regressed(gt_bodies[gender], gt_rot, gt_betas)
        is_g = (batch["gender"] == code)[:, None, None]
        gt_verts, gt_h36m = jnp.where(is_g, v, gt_verts), jnp.where(is_g, h, gt_h36m)
    gt_pelvis = gt_h36m[:, 0]
    gt = (gt_h36m - gt_pelvis[:, None])[:, jnp.asarray(proto.pred_joints)]
    out["pve"] = metrics.pve(verts, gt_verts, pelvis, gt_pelvis)
  else:
    gt = batch["joints3d"][:, jnp.asarray(proto.gt_joints), :3]
  out["mpjpe"] = jnp.linalg.norm(pred - gt, axis=-1).mean(-1)
  aligned = jax.vmap(metrics.procrustes_align)(pred, gt)
  out["pa_mpjpe"] = jnp.linalg.norm(aligned - gt, axis=-1).mean(-1)
  if proto.pck:
    out["pck_abs"], out["auc_abs"] = metrics.pck(pred, gt), metrics.auc(pred, gt)
    out["pck_pa"], out["auc_pa"] = metrics.pck(aligned, gt), metrics.auc(aligned, gt)
  out["joints"] = pred
  return out


PERCENT = ("pck_abs", "auc_abs", "pck_pa", "auc_pa")


def eval_batches(
  data_dir: str, dataset: str, split: str, batch_size: int, img_res: int, limit: int | None
) -> Iterator[tuple[dict, np.ndarray]]:
  """Centre-cropped batches padded to `batch_size` (one compile), with the mask of real rows."""
  opts = pipeline.DataOptions(
    data_dir=data_dir,
    datasets=(dataset,),
    split=split,
    batch_size=batch_size,
    img_res=img_res,
    augment=None,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
  )
  seen = 0
  for batch in pipeline.make_dataset(opts, process_index=0, process_count=1):
    n = len(batch["index"])
    keep = np.ones(batch_size, bool)
    keep[n:] = False
    if limit is not None:
      keep[max(0, limit - seen) :] = False
    if n < batch_size:
      batch = {
        k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)]) for k, v in batch.items()
      }
    yield batch, keep
    seen += n
    if limit is not None and seen >= limit:
      return


def evaluate(
  source: Source,
  dataset: str,
  split: str = "test",
  data_dir: str = "data/tfds",
  models: str | None = None,
  batch_size: int = 32,
  limit: int | None = None,
  progress: bool = True,
) -> tuple[dict, dict]:
  """(summary, per-person arrays) of `source` on a prepared dataset's split.

  `models`: a folder with SMPL_NEUTRAL / MALE / FEMALE (.pkl or .npz) for 3DPW's gendered
  ground truth; without it, the source's own model (default: the open model) serves all.
  """
  from spin_jax.data import builders

  proto = protocol_for(dataset)
  body = smpl_jax.load_model(source.body_model or None)
  gt_bodies = {"neutral": body}
  if proto.gendered:
    if not models:
      raise ValueError(
        f"{dataset} is scored against gendered SMPL meshes: pass --models DIR holding "
        "SMPL_NEUTRAL, SMPL_MALE and SMPL_FEMALE (.pkl or .npz)"
      )
    gt_bodies = {g: smpl_jax.load_model(models, gender=g) for g in ("neutral", "male", "female")}
  for name, m in {"prediction": body, **gt_bodies}.items():
    if "h36m17" not in {js.name for js in m.joint_sets}:
      raise ValueError(
        f"the {name} body model has no Human3.6M joint regressor: put SPIN's "
        "J_regressor_h36m.npy next to the SMPL file"
      )
    if proto.gt_from_smpl and m.num_vertices != body.num_vertices:
      raise ValueError(
        f"the {name} model has {m.num_vertices} vertices, the prediction's {body.num_vertices}: "
        "PVE needs one mesh topology (evaluate a network trained with SMPL on 3DPW)"
      )
  sizes = builders.split_sizes(data_dir, dataset)
  if split not in sizes:
    raise ValueError(f"{dataset} has no split {split!r}; it has {sorted(sizes)} (--split)")
  if source.check is not None:
    source.check(data_dir, dataset, split)
  n_total = sizes[split]
  n = n_total if limit is None else min(limit, n_total)
  errors_fn = jax.jit(lambda est, batch: batch_errors(proto, body, gt_bodies, est, batch))
  keys = ("pose", "betas", "joints3d", "gender", "index")
  per = {}
  bar = tqdm(
    eval_batches(data_dir, dataset, split, batch_size, source.img_res, limit),
    total=math.ceil(n / batch_size),
    desc=f"eval {source.name}",
    disable=not progress,
  )
  for batch, keep in bar:
    est = source.estimate(batch | {"keep": keep})
    errs = jax.device_get(errors_fn(est, {k: batch[k] for k in keys}))
    rows = {
      **errs,
      "index": batch["index"],
      "pose": np.asarray(rotations.rotmat_to_aa(est.rotmat)).reshape(-1, 72),
      "betas": np.asarray(est.betas),
      "cam_t": np.asarray(est.cam_t),
    }
    has_gt = np.asarray(batch["has_smpl"] if proto.gt_from_smpl else batch["has_3d"], bool)
    for k, v in rows.items():
      per.setdefault(k, []).append(np.asarray(v)[keep & has_gt])
  per = {k: np.concatenate(v) for k, v in per.items()}
  order = np.argsort(per["index"], kind="stable")  # annotation-file order (TFDS shuffles)
  per = {k: v[order] for k, v in per.items()}
  count = len(per["index"])
  if count == 0:
    raise ValueError(f"{dataset}/{split} has no person with 3D ground truth to evaluate")
  bad = [k for k in ("mpjpe", "pa_mpjpe") if not np.all(np.isfinite(per[k]))]
  if bad:
    raise FloatingPointError(f"{source.name}: non-finite {bad} on {dataset}/{split}")
  summary = {"source": source.name, "dataset": dataset, "split": split, "count": count}
  for k in ("mpjpe", "pa_mpjpe", "pve", *PERCENT):
    if k in per:
      summary[k] = float(np.mean(per[k]) * (100.0 if k in PERCENT else 1000.0))
  return summary, per


COLUMNS = {
  "mpjpe": "MPJPE (mm)",
  "pa_mpjpe": "PA-MPJPE (mm)",
  "pve": "PVE (mm)",
  "pck_abs": "PCK abs (%)",
  "auc_abs": "AUC abs (%)",
  "pck_pa": "PCK PA (%)",
  "auc_pa": "AUC PA (%)",
}


def markdown_table(rows: list[dict]) -> str:
  """One line per summary; the metric columns any of them has."""
  cols = [k for k in COLUMNS if any(k in r for r in rows)]
  head = ["source", "dataset", "people"] + [COLUMNS[k] for k in cols]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["source"], f"{r['dataset']}/{r['split']}", str(r["count"])]
    cells += [f"{r[k]:.1f}" if k in r else "" for k in cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, summary: dict, per: dict) -> Path:
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = f"{summary['dataset'].replace('/', '_')}_{summary['split']}"
  files.write_text_atomic(out_dir / f"{stem}.json", json.dumps(summary, indent=1))
  files.write_text_atomic(out_dir / f"{stem}.md", markdown_table([summary]))
  files.write_npz_atomic(out_dir / f"{stem}_predictions.npz", **per)
  return out_dir / f"{stem}.json"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  what = ap.add_mutually_exclusive_group(required=True)
  what.add_argument("--workdir", help="a training run's folder (config.json, checkpoints/)")
  what.add_argument("--fits", help="a fits file from python -m fitting.cli")
  what.add_argument("--spin_checkpoint", help="SPIN's model_checkpoint.pt (needs torch)")
  ap.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
  ap.add_argument("--dataset", required=True, help="e.g. spin_synthetic/main, spin_format/pw3d")
  ap.add_argument("--split", default="test")
  ap.add_argument("--data_dir", help="prepared TFDS data (default: the run's, or data/tfds)")
  ap.add_argument("--models", help="folder with SMPL_{NEUTRAL,MALE,FEMALE} (3DPW)")
  ap.add_argument(
    "--body_model",
    default="",
    help="with --fits: the model they were fitted with; with --spin_checkpoint: SMPL neutral",
  )
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--num_examples", type=int, help="only the first N people")
  ap.add_argument("--out", help="output folder")
  args = ap.parse_args(argv)

  data_dir = args.data_dir
  if args.workdir:
    source = checkpoint_source(args.workdir, args.step)
    if data_dir is None:
      cfg = json.loads((Path(args.workdir) / "config.json").read_text())
      data_dir = cfg["data"]["data_dir"]
    out = Path(args.out or Path(args.workdir) / "eval")
  elif args.spin_checkpoint:
    source = spin_checkpoint_source(args.spin_checkpoint, args.body_model)
    out = Path(args.out or Path(args.spin_checkpoint).parent / "eval")
  else:
    source = fits_source(args.fits, args.body_model)
    out = Path(args.out or Path(args.fits).parent)
  summary, per = evaluate(
    source,
    args.dataset,
    args.split,
    data_dir or "data/tfds",
    args.models,
    args.batch_size,
    args.num_examples,
  )
  path = write_outputs(out, summary, per)
  print(markdown_table([summary]), end="")
  print(f"written: {path} (and .md, _predictions.npz)")
  return summary


if __name__ == "__main__":
  main()
