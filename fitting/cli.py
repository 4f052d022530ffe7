"""Fit SMPL to whole datasets of 2D keypoints.

    python -m fitting.cli --input data/dataset_extras/coco_2014_train.npz --out fits/coco.npz
    python -m fitting.cli --input openpose_jsons/ --out fits/clip.npz \\
        --model data/smpl/SMPL_NEUTRAL.pkl --prior data/gmm_08.pkl

Inputs: SPIN dataset npz files and folders of OpenPose JSON files (see fitting/data_io.py). The
open body model and its prior are used unless --model / --prior are given.

Work is split into fixed-size chunks (the tail padded, so the fitter compiles once), each batch
sharded over all local devices. Every finished chunk is written atomically to --work-dir; a run
that is interrupted resumes where it stopped. Across hosts, give each process `--shard i/n` (or
`--distributed` to take i and n from jax.distributed), then run once more with `--merge` to join
the shards into --out. Examples that cannot be fitted (NaN or no confident keypoints, person
outside the crop, too few torso joints, unreadable JSON) are recorded with success = False and
their reason; they never stop the run.

Default solver: Adam, 50 + 50 steps at lr 0.03, chosen by benchmarks/smplify.py (see
benchmarks/RESULTS.md); --solver lm selects Levenberg-Marquardt. Each example starts from the
pose prior's mean pose, zero betas, a body facing the camera and
a camera translation from similar triangles on the torso (the original SMPLify's start), and the
180-degree orientation trial is on.
"""

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

import smpl_jax
from fitting import data_io, priors, smplify
from smpl_jax import files


def standalone_fit_fn(body, prior, options: smplify.SmplifyOptions):
  """keypoints (C, 49, 3) -> FitResult, starting each example from the standalone init.

  Without a network there may be no annotated torso (OpenPose folders), so the camera stage
  takes each torso joint from OpenPose where detected, else from the annotation
  (`torso_per_joint`), the rule `data_io.check_examples` checks inputs against.
  """
  options = dataclasses.replace(options, torso_per_joint=True)

  def fit_one(keypoints):
    dtype = keypoints.dtype
    init = smplify.FitParams(
      global_orient=jnp.asarray([jnp.pi, 0.0, 0.0], dtype),
      body_pose=priors.gmm_mean(prior).astype(dtype),
      betas=jnp.zeros((options.num_betas,), dtype),
      cam_t=jnp.zeros((3,), dtype),
    )
    cam_t = smplify.similar_triangles_translation(body, keypoints, init, options)
    cam_t = jnp.where(jnp.isfinite(cam_t), cam_t, jnp.asarray([0.0, 0.0, 50.0], dtype))
    init = dataclasses.replace(init, cam_t=cam_t)
    return smplify.fit_one(body, prior, keypoints, init, options)

  return jax.vmap(fit_one)


def _run_id(examples: data_io.Examples, options, body, prior) -> str:
  """Identifies a run by content: inputs, options, and the body model's and prior's arrays (not
  file paths, which differ between hosts)."""
  h = hashlib.sha256()
  h.update(np.ascontiguousarray(examples.keypoints).tobytes())
  h.update(repr(options).encode())
  for leaf in jax.tree.leaves((body, prior)):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()[:16]


def _chunk_path(work_dir: Path, k: int) -> Path:
  return work_dir / f"chunk_{k:06d}.npz"


def _chunk_rows(k: int, chunk: int, num_examples: int) -> slice:
  return slice(k * chunk, min((k + 1) * chunk, num_examples))


def _valid_chunk(path: Path, run_id: str, rows: slice) -> bool:
  """A finished chunk of this run holding exactly the examples `rows` (a chunk written with
  another chunk size, e.g. after a lost manifest, is not valid: it would duplicate rows)."""
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
      return (
        str(d["run_id"]) == run_id
        and int(d["start"]) == rows.start
        and len(d["loss"]) == rows.stop - rows.start
      )
  except Exception:  # missing, truncated, corrupt or from before chunks had a start: refit it
    return False


def fit_chunks(
  examples, body, prior, options, work_dir: Path, chunk: int, shard=(0, 1), progress=True
):
  """Fits every chunk k with k % n == i (shard (i, n)) that is not already in work_dir."""
  if len(examples) == 0:
    raise SystemExit("the inputs hold no examples.")
  if chunk <= 0:
    raise ValueError(f"chunk size {chunk}: must be a positive number of examples")
  devices = jax.local_devices()
  run_id = _run_id(examples, options, body, prior)
  work_dir.mkdir(parents=True, exist_ok=True)
  manifest = work_dir / "manifest.json"
  if manifest.exists():
    # Chunks of an earlier (or another host's) start of this run: keep its chunk size.
    old = json.loads(manifest.read_text())
    if old.get("run_id") != run_id:
      raise SystemExit(
        f"{work_dir} holds chunks of a different run (other inputs, options, body model or "
        "prior). Use a fresh --work-dir, or delete this one to start over."
      )
    chunk = int(old["chunk"])
    if chunk % len(devices):
      raise SystemExit(
        f"{work_dir} was started with chunks of {chunk}, which {len(devices)} local devices "
        "cannot split evenly; resume it on hosts with a device count dividing the chunk size."
      )
  else:
    chunk = -(-chunk // len(devices)) * len(devices)  # a multiple of the device count
    info = dict(run_id=run_id, num_examples=len(examples), chunk=chunk)
    files.write_text_atomic(manifest, json.dumps(info))
  num_chunks = -(-len(examples) // chunk)
  todo = [
    k
    for k in range(num_chunks)
    if k % shard[1] == shard[0]
    and not _valid_chunk(_chunk_path(work_dir, k), run_id, _chunk_rows(k, chunk, len(examples)))
  ]
  mesh = Mesh(np.asarray(devices), ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  fn = jax.jit(standalone_fit_fn(body, prior, options))
  bar = tqdm(
    total=len(todo) * chunk,
    unit="fit",
    disable=not progress,
    smoothing=0.1,
    desc=f"fitting (shard {shard[0]}/{shard[1]}, {len(devices)} devices)",
  )
  start = time.perf_counter()
  for k in todo:
    sl = _chunk_rows(k, chunk, len(examples))
    kp = examples.keypoints[sl]
    ok = examples.reason[sl] == ""
    n = len(kp)
    padded = np.zeros((chunk, 49, 3), np.float32)
    padded[:n] = np.where(ok[:, None, None], kp, 0.0)  # unfittable examples are not fitted
    res = jax.device_get(fn(jax.device_put(padded, sharding)))
    success = np.asarray(res.success[:n]) & ok
    reason = np.where(
      ok,
      np.where(success, "", "fit did not improve on its start or turned non-finite"),
      examples.reason[sl],
    )
    p = res.params
    files.write_npz_atomic(
      _chunk_path(work_dir, k),
      run_id=np.asarray(run_id),
      start=np.asarray(sl.start),
      pose=np.concatenate([p.global_orient, p.body_pose], -1)[:n],
      betas=np.asarray(p.betas[:n]),
      cam_t=np.asarray(p.cam_t[:n]),
      loss=np.asarray(res.loss[:n]),
      joint_error_px=np.asarray(res.joint_error_px[:n]),
      success=success,
      reason=reason.astype(str),
      source=examples.source[sl],
      source_sha256=examples.source_sha256[sl],
      index=examples.index[sl],
    )
    bar.update(chunk)
    bar.set_postfix(fits_per_s=f"{bar.n / (time.perf_counter() - start):.0f}")
  bar.close()
  return num_chunks, run_id


def merge(work_dir: Path, out: Path) -> dict:
  """Joins the chunk files of a finished run into one fits file (atomically)."""
  if not (work_dir / "manifest.json").is_file():
    raise SystemExit(f"cannot merge: {work_dir} holds no run (no manifest.json); fit first.")
  info = json.loads((work_dir / "manifest.json").read_text())
  n, chunk = int(info["num_examples"]), int(info["chunk"])
  num_chunks = -(-n // chunk)
  missing = [
    k
    for k in range(num_chunks)
    if not _valid_chunk(_chunk_path(work_dir, k), info["run_id"], _chunk_rows(k, chunk, n))
  ]
  if missing:
    raise SystemExit(
      f"cannot merge: {len(missing)} of {num_chunks} chunks are not finished yet "
      f"(first missing: {missing[:5]}); run the remaining shards first."
    )
  parts = [data_io.read_fits(_chunk_path(work_dir, k)) for k in range(num_chunks)]
  # Each valid chunk k holds exactly rows [k * chunk, (k + 1) * chunk): all N, each once.
  keys = data_io.FIT_KEYS + tuple(
    k for k in data_io.OPTIONAL_FIT_KEYS if all(k in p for p in parts)
  )
  merged = {key: np.concatenate([p[key] for p in parts]) for key in keys}
  out.parent.mkdir(parents=True, exist_ok=True)
  files.write_npz_atomic(out, **merged)
  return merged


def _parse_shard(ap, text: str) -> tuple[int, int]:
  parts = text.split("/")
  try:
    i, n = (int(x) for x in parts)
  except ValueError:
    ap.error(f"--shard {text}: expected i/n, two integers with 0 <= i < n (e.g. 0/4)")
  if not 0 <= i < n:
    ap.error(f"--shard {text}: expected i/n with 0 <= i < n (e.g. 0/4)")
  return i, n


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument(
    "--input",
    action="append",
    required=True,
    help="SPIN npz file or OpenPose JSON folder (repeatable)",
  )
  ap.add_argument("--out", required=True, help="fits npz to write")
  ap.add_argument("--work-dir", default=None, help="chunk folder (default: OUT.parts)")
  ap.add_argument("--model", default=None, help="SMPL .pkl/.npz (default: the open model)")
  ap.add_argument("--prior", default=None, help="gmm_08.pkl or npz (default: the open prior)")
  ap.add_argument("--solver", default="adam", choices=["adam", "lm"])
  ap.add_argument(
    "--num-iters",
    type=int,
    default=None,
    help="iterations per stage (default: 50 for adam, 20 for lm)",
  )
  ap.add_argument(
    "--step-size", type=float, default=0.03, help="Adam learning rate (SPIN: 0.01, 100 steps)"
  )
  ap.add_argument(
    "--interpenetration-weight",
    type=float,
    default=0.0,
    help="sphere interpenetration penalty weight (0 = off; about 1000 to use it)",
  )
  ap.add_argument("--chunk-size", type=int, default=256)
  ap.add_argument("--shard", default=None, help="i/n: fit every n-th chunk starting at i")
  ap.add_argument(
    "--distributed",
    action="store_true",
    help="jax.distributed.initialize() and shard by process (auto-detected on TPU pods, Slurm "
    "and Open MPI; elsewhere give --coordinator, --num-processes and --process-id)",
  )
  ap.add_argument("--coordinator", default=None, help="host:port of process 0")
  ap.add_argument("--num-processes", type=int, default=None)
  ap.add_argument("--process-id", type=int, default=None)
  ap.add_argument("--merge", action="store_true", help="only merge finished chunks into --out")
  ap.add_argument("--no-progress", action="store_true")
  args = ap.parse_args(argv)

  if args.chunk_size <= 0:
    ap.error(f"--chunk-size {args.chunk_size}: must be a positive number of examples")
  if args.num_iters is not None and args.num_iters <= 0:
    ap.error(f"--num-iters {args.num_iters}: must be positive (omit it for the default)")
  if not (np.isfinite(args.step_size) and args.step_size > 0):
    ap.error(f"--step-size {args.step_size}: must be a positive number")
  if not (np.isfinite(args.interpenetration_weight) and args.interpenetration_weight >= 0):
    ap.error(
      f"--interpenetration-weight {args.interpenetration_weight}: must be 0 (off) or a positive "
      "number"
    )
  shard = (0, 1)
  if args.shard and not args.distributed:
    shard = _parse_shard(ap, args.shard)
  out = Path(args.out)
  work_dir = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".parts")
  if args.merge:
    merged = merge(work_dir, out)
    print(f"merged {len(merged['loss'])} fits into {out}")
    return
  if args.distributed:
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
    shard = (jax.process_index(), jax.process_count())

  try:
    examples = data_io.read_inputs(args.input)
    body = smpl_jax.load_model(args.model)
    prior = priors.load_gmm(args.prior)
  except (OSError, ValueError) as err:
    raise SystemExit(f"error: {err}") from err
  # Default chosen by benchmarks/smplify.py from this start: Adam 50+50 at lr 0.03 beat SPIN's
  # 100+100 at 0.01 in time, loss and PA-MPJPE; LM 20+20 ends ~1 mm better at 10x the time.
  iters = args.num_iters if args.num_iters is not None else (50 if args.solver == "adam" else 20)
  options = smplify.SmplifyOptions(
    solver=args.solver,
    num_iters=iters,
    step_size=args.step_size,
    interpenetration_weight=args.interpenetration_weight,
    num_betas=min(10, body.num_betas),
    try_flipped_orientation=True,
  )
  bad = int(np.sum(examples.reason != ""))
  print(
    f"{len(examples)} examples from {len(args.input)} input(s), {bad} not fittable; "
    f"body model {body.name}; solver {args.solver} x {iters} per stage",
    file=sys.stderr,
  )
  fit_chunks(
    examples,
    body,
    prior,
    options,
    work_dir,
    args.chunk_size,
    shard,
    progress=not args.no_progress,
  )
  if shard[1] == 1:
    merged = merge(work_dir, out)
    ok = merged["success"]
    print(
      f"wrote {out}: {int(ok.sum())} of {len(ok)} fitted; mean loss of fitted "
      f"{float(np.mean(merged['loss'][ok])) if ok.any() else float('nan'):.2f} px^2"
    )
  else:
    print(
      f"shard {shard[0]}/{shard[1]} done; merge with: python -m fitting.cli --merge "
      f"--input {' --input '.join(args.input)} --out {out} --work-dir {work_dir}"
    )


if __name__ == "__main__":
  main()
