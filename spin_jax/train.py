"""Trains SPIN: `python -m spin_jax.train --config experiments/configs/synthetic.py`.

    --config.steps=3000 --config.model.backbone=resnet50 ...   override any option
    --workdir DIR                                              checkpoints, TensorBoard logs
    --restore_fallback                                         skip unreadable checkpoints
    --distributed                                              jax.distributed.initialize()

One compiled step (`train_step`) on a mesh of all devices: the batch is sharded over the `data`
axis, parameters, optimiser state and the fits table are replicated. On many hosts
(`--distributed`) each process reads its rows of the one-process stream, so the global batch is
the batch one process would read, in its order; validation is sharded the same way and summed on
device; only process 0 writes the run's files, logs and pictures. Paths go through
`etils.epath`, so `--workdir gs://bucket/run` works wherever TFDS and orbax reach.
Checkpoints (orbax) hold the train state with the fits table, and the data iterator's state,
together: the same command after an interruption (kill -9 included) continues from the last
checkpoint with the same next batch.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

import smpl_jax
from fitting import priors
from smpl_jax import rotations
from smpl_jax.files import write_text_atomic
from spin_jax import fits as fits_lib
from spin_jax import spin_files as spin_files_lib
from spin_jax import train_step as ts
from spin_jax.config import TrainConfig, from_config_dict
from spin_jax.data import builders, pipeline, records
from spin_jax.model import Regressor, load_mean_params, open_mean_params


class NonFiniteLoss(RuntimeError):
  pass


class CheckpointError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions, a refused step)."""


class Preempted(RuntimeError):
  """SIGTERM arrived: the step in flight finished and was checkpointed; rerun to resume."""


# -- paths ----------------------------------------------------------------------------------------


def run_path(path) -> epath.Path:
  """A local or remote (gs://, s3://) path; `Path("gs://b")` would turn into "gs:/b"."""
  p = epath.Path(path)
  return p if "://" in str(path) else epath.Path(os.path.abspath(path))


def replicate(tree, sharding):
  """Host or single-device values -> arrays on `sharding` (which may span other processes'
  devices, where `device_put` refuses); every process passes the same values."""

  def put(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # nnx's RNG state
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def write_run_file(path: epath.Path, text: str) -> None:
  """Writes a small run file: atomically on local disks (temporary file + rename); an object
  store's upload is atomic by itself."""
  if "://" in str(path):
    path.write_text(text)
  else:
    write_text_atomic(path, text)


def prepare_workdir(workdir: epath.Path) -> None:
  """Creates the run folder, or raises one error naming it (an unreachable bucket, a path
  through a file, no permission) instead of a traceback from inside the storage client."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except Exception as e:
    raise ValueError(
      f"cannot create or reach --workdir {workdir}: {type(e).__name__}: {e}"
    ) from None


# -- data -----------------------------------------------------------------------------------------


def ensure_synthetic(cfg: TrainConfig) -> None:
  """Builds the configured synthetic dataset when it is missing (the README's main job), after
  checking that every other configured dataset is prepared (nothing is built for a run that
  cannot start)."""
  for name in dict.fromkeys((*cfg.data.train, cfg.data.val)):
    if not name.startswith("spin_synthetic/"):
      builders.dataset_dir(cfg.data.data_dir, name)  # FileNotFoundError naming it
  names = {n for n in (*cfg.data.train, cfg.data.val) if n.startswith("spin_synthetic/")}
  for name in sorted(names):
    try:
      builders.dataset_dir(cfg.data.data_dir, name)
    except FileNotFoundError:
      if not cfg.data.build_synthetic:
        raise
      from spin_jax.data import build

      n_train, n_val, n_test = cfg.data.synthetic_sizes
      print(f"building {name} ({n_train} / {n_val} / {n_test}) in {cfg.data.data_dir}")
      build.build_synthetic(
        cfg.data.data_dir,
        name.split("/", 1)[1],
        workers=2,
        num_train=n_train,
        num_validation=n_val,
        num_test=n_test,
        model=cfg.body_model or None,
      )


def dataset_rows(data_dir: str, name: str, split: str) -> tuple[int, int]:
  """(dataset_id, rows of its annotation file) of a prepared training dataset: the range of
  its records' `index`, which is the fits table's extent for it (rows the build skipped have
  a row too; they never train)."""
  builder, _, config = name.partition("/")
  path = builders.dataset_dir(data_dir, name)
  kept = builders.split_sizes(data_dir, name)[split]
  if builder == "spin_synthetic":
    return records.SYNTHETIC_ID + records.SYNTHETIC_SPLITS.index(split), kept
  report = builders.read_json(path / builders.BUILD_REPORT, {})
  if "num_rows" not in report:
    raise ValueError(
      f"{name} in {path} has no row count of its annotation file (build_report.json is missing "
      "or from an older version): rerun `python -m spin_jax.data.build spin --datasets "
      f"{config} ...` with the same files; it reuses the records and writes the report"
    )
  n = int(report["num_rows"])
  if kept > n:
    raise ValueError(f"{name}: {kept} records but its annotation file has {n} rows; rebuild it")
  return records.dataset_info(config).dataset_id, n


def layout_of(cfg: TrainConfig) -> fits_lib.Layout:
  return fits_lib.Layout(
    tuple(dataset_rows(cfg.data.data_dir, n, "train") for n in cfg.data.train)
  )


def data_options(cfg: TrainConfig) -> pipeline.DataOptions:
  return pipeline.DataOptions(
    data_dir=cfg.data.data_dir,
    datasets=cfg.data.train,
    weights=cfg.data.weights or None,
    batch_size=cfg.batch_size,
    img_res=cfg.model.img_res,
    ignore_3d=cfg.data.ignore_3d,
    seed=cfg.seed,
    num_threads=cfg.data.num_threads,
    num_processes=cfg.data.num_processes,
  )


def fits_files(cfg: TrainConfig, layout: fits_lib.Layout) -> dict[int, str]:
  ids = {}  # a training set by its TFDS name or config; SPIN names resolve through records
  for n, (d, _) in zip(cfg.data.train, layout.datasets):
    ids[n] = ids[n.split("/")[-1]] = d
  out = {}
  for item in cfg.data.fits_files:
    name, sep, path = item.partition("=")
    if not sep:
      raise ValueError(
        f"data.fits_files entry {item!r} is not '<dataset>=<fits.npz or SPIN's _fits.npy>'"
      )
    out[ids[name] if name in ids else records.dataset_info(name).dataset_id] = path
  return out


def fits_made_from(cfg: TrainConfig, layout: fits_lib.Layout) -> dict:
  """dataset_id -> (name, files its fits files must have been made from)."""
  return {
    d: (f"{n}/train", builders.annotation_identities(cfg.data.data_dir, n, "train"))
    for n, (d, _) in zip(cfg.data.train, layout.datasets)
  }


# -- state ----------------------------------------------------------------------------------------


def make_optimizer(cfg: TrainConfig):
  adam = optax.adam(cfg.lr)
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adam) if cfg.grad_clip else adam


def mean_params(cfg: TrainConfig):
  return load_mean_params(cfg.model.mean_params) if cfg.model.mean_params else open_mean_params()


def create_state(cfg: TrainConfig, layout: fits_lib.Layout, tx):
  """(train graphdef, eval graphdef, TrainState) with freshly initialised parameters."""
  if cfg.model.pretrained_checkpoint and cfg.model.backbone != "resnet50":
    raise ValueError(
      f"model.pretrained_checkpoint is SPIN's ResNet-50 network; model.backbone is "
      f"{cfg.model.backbone!r}: set --config.model.backbone=resnet50"
    )
  mp = mean_params(cfg)

  def make():
    return Regressor(
      mp,
      cfg.model.backbone,
      cfg.model.num_iters,
      dropout=cfg.model.dropout,
      rngs=nnx.Rngs(cfg.seed),
    )

  abstract = nnx.eval_shape(make)
  abstract.train()
  graphdef = nnx.graphdef(abstract)
  abstract.eval()
  eval_graphdef = nnx.graphdef(abstract)
  params, rest = jax.jit(lambda: nnx.split(make(), nnx.Param, ...)[1:])()
  if cfg.model.pretrained:
    from spin_jax import weights

    params, rest = weights.load_torchvision_resnet(cfg.model.pretrained, params, rest)
  if cfg.model.pretrained_checkpoint:  # SPIN's released network (docs/spin_files.md)
    params, rest = spin_files_lib.load_spin_checkpoint(
      cfg.model.pretrained_checkpoint, params, rest
    )
  mean_aa = rotations.rot6d_to_aa(jnp.asarray(mp.pose6d).reshape(24, 6)).reshape(72)
  files = fits_files(cfg, layout)
  made_from = fits_made_from(cfg, layout) if files else None
  # fits.init_table, also taking SPIN's <dataset>_fits.npy
  table = spin_files_lib.init_table(layout, np.asarray(mean_aa), files, made_from)
  state = ts.TrainState(params, rest, tx.init(params), table, jnp.zeros((), jnp.int32))
  return graphdef, eval_graphdef, state, np.asarray(mean_aa)


def checkpoint_manager(workdir: epath.Path, cfg: TrainConfig) -> ocp.CheckpointManager:
  # Synchronous saves: a failed save (disk full, ...) is an error at that step, with the
  # partial step folder removed, not a background failure noticed steps later.
  return ocp.CheckpointManager(
    workdir / "checkpoints",
    options=ocp.CheckpointManagerOptions(
      max_to_keep=cfg.keep_checkpoints, create=True, enable_async_checkpointing=False
    ),
  )


def restore(mngr, state, data_iter, fallback: bool):
  """Restores the newest checkpoint into (state, data_iter); returns (state, step, damaged) or
  (state, 0, damaged) when there is none. An unreadable checkpoint is an error naming it, or
  with `fallback` a warning and the next older one; `damaged` lists the unreadable steps."""
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
  )
  damaged = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      got = mngr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          data=grain.checkpoint.CheckpointRestore(data_iter),
        ),
      )
      return got["state"], step, damaged
    except Exception as e:  # orbax raises many kinds for a damaged step directory
      where = epath.Path(mngr.directory) / str(step)
      if not fallback:
        raise RuntimeError(
          f"checkpoint {where} cannot be restored ({type(e).__name__}: {e}); rerun with "
          "--restore_fallback to use the newest readable one, or remove it"
        ) from e
      print(f"warning: checkpoint {where} unreadable ({type(e).__name__}); trying an older one")
      damaged.append(step)
  return state, 0, damaged


def set_aside(workdir: epath.Path, steps) -> list[epath.Path]:
  """Moves damaged checkpoint steps to <workdir>/checkpoints_damaged/<step>[.k] (kept for a
  post-mortem, out of orbax's way: it would refuse to save those steps again)."""
  aside = workdir / "checkpoints_damaged"
  aside.mkdir(exist_ok=True)
  moved = []
  for step in steps:
    dest, k = aside / str(step), 1
    while dest.exists():
      dest, k = aside / f"{step}.{k}", k + 1
    (workdir / "checkpoints" / str(step)).rename(dest)
    moved.append(dest)
  return moved


def save_checkpoint(mngr, step: int, state, data_iter) -> None:
  """Saves (state, data iterator) at `step`, or raises CheckpointError with one message after
  removing the partial folder; a save that orbax refuses is an error too."""
  directory = epath.Path(mngr.directory)
  try:
    saved = mngr.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)
      ),
    )
    mngr.wait_until_finished()
  except Exception as e:
    for tmp in directory.glob(f"{step}.orbax-checkpoint-tmp*"):
      shutil.rmtree(tmp, ignore_errors=True)
    raise CheckpointError(
      f"saving checkpoint {step} in {directory} failed ({type(e).__name__}: {e}); the newest "
      f"complete checkpoint is {mngr.latest_step()}. Free space (or fix the folder) and rerun "
      "the same command: it resumes from there"
    ) from e
  if not saved:
    raise CheckpointError(
      f"orbax refused to save step {step} in {directory} (its newest step is "
      f"{mngr.latest_step()}); move that step aside or use another --workdir"
    )


# -- evaluation and images ------------------------------------------------------------------------


def val_batches(cfg: TrainConfig, process_index: int = 0, process_count: int = 1):
  """This process's part of the validation batches: (batch, keep) of batch_size / P rows, keep
  marking the examples that count (within val_examples, with 3D joints, not padding). Every
  process yields the same number of batches; row j of batch k of process p is example
  k B + p L + j, L = B / P, as in training (`pipeline.ProcessRows`)."""
  local = cfg.batch_size // process_count
  total = min(
    cfg.data.val_examples,
    builders.split_sizes(cfg.data.data_dir, cfg.data.val)[cfg.data.val_split],
  )
  opts = pipeline.DataOptions(
    data_dir=cfg.data.data_dir,
    datasets=(cfg.data.val,),
    split=cfg.data.val_split,
    batch_size=cfg.batch_size,
    img_res=cfg.model.img_res,
    augment=None,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    num_threads=cfg.data.num_threads,
  )
  ds = pipeline.make_dataset(opts, process_index=process_index, process_count=process_count)
  last = None
  for k in range(math.ceil(total / cfg.batch_size)):
    batch = ds[k] if k < len(ds) else None
    if batch is None:  # this process's share ran out first: a batch that counts for nothing
      if last is None:
        last = pipeline.make_dataset(opts, process_index=0, process_count=1)[0]
      batch = {key: v[:1] for key, v in last.items()}
    n = len(batch["index"])
    rows = k * cfg.batch_size + process_index * local + np.arange(local)
    keep = np.concatenate([np.asarray(batch["has_3d"]), np.zeros(local - n, bool)])
    keep &= (rows < total) & (np.arange(local) < (n if k < len(ds) else 0))
    if n < local:  # one shape: one compile
      batch = {
        key: np.concatenate([v, np.repeat(v[-1:], local - n, 0)]) for key, v in batch.items()
      }
    last = batch
    yield batch, keep


def evaluate(cfg, eval_fn, state, as_global=None) -> dict[str, float]:
  """Validation MPJPE / PA-MPJPE (mm) over the first val_examples examples. `eval_fn(params,
  rest, batch, keep)` returns sums over the kept rows; with `as_global` (many processes) each
  process feeds its share and the sums come back replicated."""
  sums, count = {}, 0
  for batch, keep in val_batches(cfg, jax.process_index(), jax.process_count()):
    batch = dict(batch, keep=keep)
    if as_global is not None:
      batch = as_global(batch)
    out = jax.device_get(eval_fn(state.params, state.rest, batch))
    for k, v in out.items():
      if k == "count":
        count += int(v)
      else:
        sums[k] = sums.get(k, 0.0) + float(v)
  if count == 0:
    raise ValueError(
      f"validation set {cfg.data.val}/{cfg.data.val_split} has no example with 3D joints "
      "(has_3d); pick another with --config.data.val / --config.data.val_split"
    )
  return {k: 1000.0 * v / count for k, v in sums.items()} | {"count": count}


def summed(metric_fn):
  """(params, rest, batch with `keep`) -> {metric: sum over kept rows, "count": kept rows}."""

  def fn(params, rest, batch):
    keep = batch["keep"]
    out = metric_fn(params, rest, batch)
    return {k: jnp.sum(jnp.where(keep, v, 0.0)) for k, v in out.items()} | {"count": jnp.sum(keep)}

  return fn


def overlay_meshes(eval_graphdef, params, rest, body, images):
  """(vertices, camera translations) of the network's prediction on `images` (jit it)."""
  from smpl_jax import camera

  _, pred = ts.predict_joints(eval_graphdef, params, rest, body, images)
  out = smpl_jax.forward_batch(body, pred.betas, pred.rotmat[:, :1], pred.rotmat[:, 1:])
  return out.vertices, camera.weak_perspective_to_translation(pred.cam)


def overlay_images(cfg, body, meshes, images) -> np.ndarray:
  """(n, R, R, 3) uint8: input crops with the predicted meshes (`overlay_meshes`) drawn over."""
  from smpl_jax import camera, render

  verts, cam_t = (np.asarray(x, np.float64) for x in jax.device_get(meshes))
  res = cfg.model.img_res
  focal = camera.FOCAL_LENGTH * res / camera.IMG_RES
  tiles = []
  for k in range(len(images)):
    rgb, mask = render.render(
      verts[k] + cam_t[k], np.asarray(body.faces), focal, (res / 2, res / 2), (res, res)
    )
    tile = np.asarray(images[k], np.float64)
    tile[mask] = 0.4 * tile[mask] + 0.6 * rgb[mask]
    tiles.append(tile.astype(np.uint8))
  return np.stack(tiles)


# -- the loop -------------------------------------------------------------------------------------


@contextlib.contextmanager
def on_sigterm():
  """Yields an Event set when SIGTERM arrives (TPU / Slurm preemption), so the loop can save
  and exit between steps; the previous handler comes back afterwards. Outside the main thread
  (where handlers cannot be installed) and with many processes the event is never set."""
  stop = threading.Event()
  # Many hosts would each stop at their own step and save alone (a collective save needs all
  # of them at one step): there, preemption falls back to the last interval checkpoint.
  if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
    yield stop
    return
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
  try:
    yield stop
  finally:
    signal.signal(signal.SIGTERM, previous)


def check_batch_rows(batch, rows: dict[int, int], step: int) -> None:
  """Every sample's (dataset_id, index) must name a row of the fits table: a record outside
  its dataset's rows would read and overwrite another person's fit."""
  ds = np.asarray(batch["dataset_id"])
  idx = np.asarray(batch["index"])
  unknown = set(np.unique(ds).tolist()) - set(rows)
  if unknown:
    raise ValueError(
      f"batch at step {step} has dataset ids {sorted(unknown)} not in the fits table"
    )
  size = np.asarray([rows[int(d)] for d in ds])
  bad = (idx < 0) | (idx >= size)
  if bad.any():
    pairs = sorted({(int(d), int(i)) for d, i in zip(ds[bad], idx[bad])})
    raise ValueError(
      f"batch at step {step}: records (dataset_id, index) {pairs[:5]} lie outside their "
      f"dataset's rows ({ {int(d): rows[int(d)] for d in np.unique(ds[bad])} }): the dataset "
      "was built from another annotation file than its build_report.json says; rebuild it"
    )


def run(cfg: TrainConfig, workdir: str | None = None, restore_fallback: bool = False) -> dict:
  """Trains (or resumes) to `cfg.steps`; returns {"step", "val", "baseline"}. Raises Preempted
  after saving when SIGTERM arrives (preemption), CheckpointError when a save fails."""
  workdir = run_path(workdir or cfg.workdir)
  prepare_workdir(workdir)
  done_steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
  if done_steps and max(done_steps) > cfg.steps:
    raise ValueError(
      f"{workdir} holds a run at step {max(done_steps)}, beyond --config.steps={cfg.steps}: "
      "nothing was trained or overwritten. Evaluate that run with `python -m spin_jax.eval "
      f"--workdir {workdir}`, train it further with a larger --config.steps, or use another "
      "--workdir"
    )
  if jax.process_index() == 0:
    write_run_file(workdir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
  body = smpl_jax.load_model(cfg.body_model or None)
  ts.require_gt_joints(body, f"--config.body_model={cfg.body_model!r}")
  if jax.process_index() == 0:
    ensure_synthetic(cfg)
  if jax.process_count() > 1:  # the other hosts wait for the build
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("spin_jax: datasets ready")
  prior = priors.load_gmm(cfg.prior or None)
  layout = layout_of(cfg)
  tx = make_optimizer(cfg)
  graphdef, eval_graphdef, state, mean_aa = create_state(cfg, layout, tx)

  mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  repl, data_sh = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  if cfg.batch_size % jax.device_count():
    raise ValueError(
      f"batch_size {cfg.batch_size} is not divisible by {jax.device_count()} devices"
    )
  state, body, prior = replicate((state, body, prior), repl)
  step_fn = jax.jit(
    lambda s, b, m, p: ts.train_step(s, b, m, p, graphdef=graphdef, tx=tx, cfg=cfg),
    in_shardings=(repl, data_sh, repl, repl),
    out_shardings=(repl, repl),
    donate_argnums=0,
  )
  eval_fn = jax.jit(
    summed(lambda params, rest, b: ts.eval_step(eval_graphdef, params, rest, body, b)),
    in_shardings=(repl, repl, data_sh),
    out_shardings=repl,
  )
  meshes_fn = jax.jit(
    lambda params, rest, images: overlay_meshes(eval_graphdef, params, rest, body, images),
    out_shardings=repl,
  )

  data_iter = pipeline.make_iterator(data_options(cfg))
  mngr = checkpoint_manager(workdir, cfg)
  state, start, damaged = restore(mngr, state, data_iter, restore_fallback)
  if damaged:
    mngr.close()
    if jax.process_index() == 0:
      for dest in set_aside(workdir, damaged):
        print(f"moved unreadable checkpoint to {dest}")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("spin_jax: damaged checkpoints set aside")
    mngr = checkpoint_manager(workdir, cfg)
  if start:
    print(f"resumed from {epath.Path(mngr.directory) / str(start)} (step {start})")
  from tensorboardX import SummaryWriter

  writer = SummaryWriter(str(workdir / "tb")) if jax.process_index() == 0 else None

  def as_global(batch):
    return {k: jax.make_array_from_process_local_data(data_sh, v) for k, v in batch.items()}

  def overlay(batch, n=4):
    # Every process runs the jitted prediction on the global batch's first rows (process 0's
    # first rows); process 0 draws them.
    images = as_global({"image": batch["image"]})["image"]
    meshes = meshes_fn(state.params, state.rest, images[:n])
    return overlay_images(cfg, body, meshes, batch["image"][:n]) if writer else None

  baseline = None
  if start == 0:
    base_fn = jax.jit(
      summed(lambda p, r, b: ts.mean_pose_eval(body, mean_aa, b)),
      in_shardings=(repl, repl, data_sh),
      out_shardings=repl,
    )
    baseline = evaluate(cfg, base_fn, state, as_global)
    if jax.process_index() == 0:
      write_run_file(workdir / "baseline.json", json.dumps(baseline))
    print(
      f"mean-pose baseline on {cfg.data.val}/{cfg.data.val_split}: "
      f"MPJPE {baseline['mpjpe']:.1f} mm, PA-MPJPE {baseline['pa_mpjpe']:.1f} mm"
    )
  elif (workdir / "baseline.json").is_file():
    baseline = json.loads((workdir / "baseline.json").read_text())

  bar = tqdm(
    range(start, cfg.steps),
    initial=start,
    total=cfg.steps,
    desc="train",
    disable=jax.process_index() != 0,
  )
  t_last, n_last, val = time.perf_counter(), start, None
  rows = dict(layout.datasets)
  pending = []  # (step, device metrics, batch ids) not yet read on the host
  skipped = []  # steps whose non-finite batch was skipped (--config.skip_nonfinite)

  def read_metrics():
    """Reads the steps run since the last read (one host sync): a non-finite step stops training
    (the state is unchanged by it) unless cfg.skip_nonfinite; returns the finite steps' mean."""
    got = jax.device_get([m for _, m, _ in pending])
    done_steps = [(s, m, ids) for (s, _, ids), m in zip(pending, got)]
    pending.clear()
    for s, m, ids in done_steps:
      if m["finite"]:
        continue
      if not cfg.skip_nonfinite:
        raise NonFiniteLoss(
          f"non-finite loss or gradients at step {s} (that step changed nothing; last "
          f"checkpoint {mngr.latest_step()}); batch (dataset_id, index): {ids}; "
          "--config.skip_nonfinite=True skips such batches"
        )
      skipped.append(s)
      tqdm.write(f"step {s}: non-finite loss or gradients, batch skipped: {ids[:8]}")
    good = [m for _, m, _ in done_steps if m["finite"]]
    if not good:
      return {}
    return {k: float(np.mean([m[k] for m in good])) for k in good[0] if k != "finite"}

  with on_sigterm() as stop:
    for step in bar:
      batch = next(data_iter)
      check_batch_rows(batch, rows, step + 1)
      state, metrics = step_fn(state, as_global(batch), body, prior)
      ids = sorted({(int(d), int(i)) for d, i in zip(batch["dataset_id"], batch["index"])})
      pending.append((step + 1, metrics, ids))
      if len(pending) > 2:  # bound the queue without stalling: two steps stay in flight
        jax.block_until_ready(pending[-3][1]["finite"])
      done = step + 1
      interval = (done % cfg.eval_every == 0) or (done % cfg.checkpoint_every == 0)
      if done % cfg.log_every == 0 or done == cfg.steps or interval or stop.is_set():
        means = read_metrics()
      if (done % cfg.log_every == 0 or done == cfg.steps) and means:
        now = time.perf_counter()
        rate = (done - n_last) / (now - t_last)
        t_last, n_last = now, done
        bar.set_postfix(loss=f"{means['loss']:.3f}", upd=f"{means['fits/update_rate']:.2f}")
        if writer:
          for k, v in means.items():
            writer.add_scalar(k, v, done)
          writer.add_scalar("steps_per_s", rate, done)
          writer.add_scalar("nonfinite_skipped", len(skipped), done)
      if stop.is_set():  # preemption: keep this step, skip the interval work, exit
        save_checkpoint(mngr, done, state, data_iter)
        bar.close()
        if writer:
          writer.close()
        raise Preempted(
          f"SIGTERM after step {done}: saved {epath.Path(mngr.directory) / str(done)}; run the "
          "same command to resume from it"
        )
      if done % cfg.image_every == 0:
        imgs = overlay(batch)
        if writer:
          writer.add_images("train/overlay", imgs, done, dataformats="NHWC")
      if done % cfg.eval_every == 0 or done == cfg.steps:
        val = evaluate(cfg, eval_fn, state, as_global)
        if writer:
          writer.add_scalar("val/mpjpe_mm", val["mpjpe"], done)
          writer.add_scalar("val/pa_mpjpe_mm", val["pa_mpjpe"], done)
        tqdm.write(
          f"step {done}: val MPJPE {val['mpjpe']:.1f} mm, PA-MPJPE {val['pa_mpjpe']:.1f} mm"
        )
      if done % cfg.checkpoint_every == 0 or done == cfg.steps:
        save_checkpoint(mngr, done, state, data_iter)
  mngr.wait_until_finished()
  if writer:
    writer.close()
  if val is None:
    val = evaluate(cfg, eval_fn, state, as_global)
  result = {"step": int(cfg.steps), "val": val, "baseline": baseline}
  if skipped:
    result["nonfinite_skipped"] = skipped
  if jax.process_index() == 0:
    write_run_file(workdir / "result.json", json.dumps(result, indent=1))
  return result


def main(argv):
  from absl import flags, logging

  del argv
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO
  flag = flags.FLAGS
  cfg = from_config_dict(flag.config)
  if flag.distributed:
    # CPU hosts (and the localhost test) need a collectives backend; GPUs and TPUs ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      flag.coordinator, flag.num_processes, flag.process_id
    )  # None: detected on TPU pods, SLURM, Kubernetes ...
  workdir = flag.workdir or cfg.workdir
  try:
    result = run(cfg, workdir, flag.restore_fallback)
  except Preempted as e:
    print(e, file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)  # what a process killed by SIGTERM returns
  except CheckpointError as e:
    raise SystemExit(f"error: {e}") from None
  if jax.process_index() == 0:
    val, base = result["val"], result["baseline"]
    print(
      f"\nfinished {result['step']} steps. Validation ({cfg.data.val}/{cfg.data.val_split}, "
      f"{val['count']} people):"
    )
    print(f"  network    MPJPE {val['mpjpe']:.1f} mm   PA-MPJPE {val['pa_mpjpe']:.1f} mm")
    if base:
      print(f"  mean pose  MPJPE {base['mpjpe']:.1f} mm   PA-MPJPE {base['pa_mpjpe']:.1f} mm")
    wd = run_path(workdir)
    print(f"checkpoints: {wd / 'checkpoints'}   TensorBoard: {wd / 'tb'}")


def define_flags():
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py", "training config")
  flags.DEFINE_string("workdir", None, "output directory (default: the config's workdir)")
  flags.DEFINE_bool("restore_fallback", False, "skip unreadable checkpoints")
  flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host)")
  flags.DEFINE_string("coordinator", None, "host:port of process 0 (default: detected)")
  flags.DEFINE_integer("num_processes", None, "number of processes (default: detected)")
  flags.DEFINE_integer("process_id", None, "this process's index (default: detected)")


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
