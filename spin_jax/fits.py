"""SPIN's fits dictionary as one on-device table (SPIN_SPEC 5).

Row `offsets[dataset_id] + index` holds the best fit so far of that training sample, as
[pose (72, axis-angle), betas (10)] in the sample's canonical (un-augmented) frame, with the
score it was accepted with. `gather` returns fits in the batch's augmented frame (rotate the
global orientation by the in-plane angle, then flip); `scatter` undoes the augmentation and
writes only rows whose `update` is true. The table is a pytree, lives in the train state, is
replicated across devices and is saved with every checkpoint.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool, Float, Int

from fitting.data_io import read_fits
from smpl_jax import augment

MAX_DATASET_ID = 32


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class FitsTable:
  pose: Float[jax.Array, "N 72"]
  betas: Float[jax.Array, "N 10"]
  offsets: Int[jax.Array, " 32"]  # row offset of each dataset id (-1: not in the table)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which datasets the table holds: (dataset_id, number of rows) in row order."""

  datasets: tuple[tuple[int, int], ...]

  @property
  def num_rows(self) -> int:
    return sum(n for _, n in self.datasets)

  def offsets(self) -> np.ndarray:
    out = np.full(MAX_DATASET_ID, -1, np.int32)
    start = 0
    for ds, n in self.datasets:
      out[ds] = start
      start += n
    return out

  def rows(self, dataset_id: int) -> slice:
    start = int(self.offsets()[dataset_id])
    return slice(start, start + dict(self.datasets)[dataset_id])


def rows_of(table: FitsTable, dataset_id, index):
  return table.offsets[dataset_id] + index


class FitsMismatch(ValueError):
  """A fits file made from other data than the dataset it is used for."""


def check_made_from(fits: dict, path, expected: list[dict], what: str) -> None:
  """Refuses a fits file whose input is not one of `expected` ({"file", "sha256"}: the
  annotation or exported keypoint files of dataset split `what`, from
  `builders.annotation_identities`), naming both. The fitter records each row's input file
  (`source`) and its sha256 (`source_sha256`); files from before it recorded the hash are
  matched by file name. With nothing to compare against, a file with hashes is refused (its
  input cannot be confirmed), one without them is accepted with a note."""
  names = sorted({str(s).split("/")[0] for s in np.asarray(fits["source"]).reshape(-1)})
  hashes = sorted({str(h) for h in np.asarray(fits.get("source_sha256", [])).reshape(-1)})
  known = ", ".join(f"{e['file']} (sha256 {e['sha256'][:12]})" for e in expected)
  made = ", ".join(names) + (f" (sha256 {', '.join(h[:12] for h in hashes)})" if hashes else "")
  if not expected:
    if hashes:
      raise FitsMismatch(
        f"fits file {path} was made from {made}, but {what} records no annotation or exported "
        "keypoint file to check it against: fit the file the dataset was built from (rebuild "
        "spin_format datasets with `python -m spin_jax.data.build spin` to record it) or the "
        "split's keypoints from `python -m spin_jax.data.build export`"
      )
    print(f"note: cannot check that fits file {path} ({made}) was made from {what}")
    return
  ok = (
    set(hashes) <= {e["sha256"] for e in expected}
    if hashes
    else set(names) <= {e["file"] for e in expected}
  )
  if not ok:
    raise FitsMismatch(
      f"fits file {path} was made from {made}, not from {what} (its files: {known}); "
      "use fits of this dataset's own annotation file"
    )


def init_table(
  layout: Layout,
  mean_pose: np.ndarray,
  fits_files: dict[int, str] | None = None,
  made_from: dict[int, tuple[str, list[dict]]] | None = None,
) -> FitsTable:
  """Every row the mean pose (axis-angle, 72) and zero betas, except datasets with a fits
  file: the standalone fitter's npz (`python -m fitting.cli`), rows placed by its `index`.
  `made_from[dataset_id]`: (name, files) the fits must have been made from
  (`check_made_from`)."""
  pose = np.tile(np.asarray(mean_pose, np.float32), (layout.num_rows, 1))
  betas = np.zeros((layout.num_rows, 10), np.float32)
  sizes = dict(layout.datasets)
  for ds, path in (fits_files or {}).items():
    if ds not in sizes:
      raise ValueError(f"fits file {path} is for dataset id {ds}, which is not being trained on")
    f = read_fits(path)
    if made_from and ds in made_from:
      check_made_from(f, path, made_from[ds][1], made_from[ds][0])
    n = sizes[ds]
    if "dataset_id" in f and np.any(f["dataset_id"] != ds):
      raise ValueError(
        f"fits file {path} holds dataset ids {np.unique(f['dataset_id']).tolist()}, not {ds}"
      )
    idx = np.asarray(f["index"], np.int64)
    lo, hi = idx.min(initial=0), idx.max(initial=-1)
    if len(idx) != n or lo < 0 or hi >= n:
      raise ValueError(
        f"fits file {path} has {len(idx)} rows (indices {lo}..{hi}) but dataset id {ds} has "
        f"{n}: it was made for another dataset or version"
      )
    good = np.asarray(f["success"], bool) & np.all(np.isfinite(f["pose"]), axis=1)
    rows = layout.rows(ds).start + idx[good]
    pose[rows] = f["pose"][good]
    betas[rows] = f["betas"][good, :10]
  return FitsTable(jnp.asarray(pose), jnp.asarray(betas), jnp.asarray(layout.offsets()))


def _to_augmented(pose, rot_deg, flipped):
  go = augment.rotate_global_orient(pose[..., :3], rot_deg)
  pose = jnp.concatenate([go, pose[..., 3:]], axis=-1)
  return jnp.where(flipped[..., None], augment.flip_pose(pose), pose)


def _to_canonical(pose, rot_deg, flipped):
  pose = jnp.where(flipped[..., None], augment.flip_pose(pose), pose)
  go = augment.rotate_global_orient(pose[..., :3], -rot_deg)
  return jnp.concatenate([go, pose[..., 3:]], axis=-1)


def gather(table: FitsTable, dataset_id, index, rot_deg, flipped):
  """(pose, betas) of a batch's samples in the batch's augmented frame."""
  rows = rows_of(table, dataset_id, index)
  return _to_augmented(table.pose[rows], rot_deg, flipped), table.betas[rows]


def scatter(
  table: FitsTable,
  dataset_id: Int[jax.Array, " B"],
  index: Int[jax.Array, " B"],
  rot_deg: Float[jax.Array, " B"],
  flipped: Bool[jax.Array, " B"],
  update: Bool[jax.Array, " B"],
  pose: Float[jax.Array, "B 72"],
  betas: Float[jax.Array, "B 10"],
) -> FitsTable:
  """Writes augmented-frame fits back in the canonical frame where `update`."""
  rows = rows_of(table, dataset_id, index)
  # Rows not updated point past the end and are dropped by the scatter.
  rows = jnp.where(update, rows, table.pose.shape[0])
  new_pose = _to_canonical(pose, rot_deg, flipped)
  return dataclasses.replace(
    table,
    pose=table.pose.at[rows].set(new_pose.astype(table.pose.dtype), mode="drop"),
    betas=table.betas.at[rows].set(betas.astype(table.betas.dtype), mode="drop"),
  )
