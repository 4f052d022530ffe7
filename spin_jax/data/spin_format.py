"""SPIN's preprocessed datasets (`dataset_extras/*.npz` + image folders) into records.

The annotation files are read as SPIN_SPEC 8 specifies: `imgname`, `center` (px), `scale` (box
side / 200) are required; `part` (24 x 3 GT keypoints), `openpose` (25 x 3), `S` (24 x 4 or
24 x 3, root-centred metres), `pose` (72), `shape` (10), `has_smpl`, `gender` are optional and
default to absent. Keypoints are pixel indices in the files (SPIN treats them so) and become
continuous stored-crop pixels here.

Corrections of the reference code's preprocessing (SPIN_SPEC 12.6): keypoints are not truncated
to integers, there are no MATLAB-style +1/-1 offsets (one explicit index-to-continuous shift
instead), and crops are resized with antialiasing but without `scipy.misc`'s per-crop min-max
contrast stretch. The unsorted-glob pairing of MPI-INF-3DHP frames (12.10) happens when the npz
is made; the npz files are read as given, with the name mismatch of its test file handled in
`records.DATASETS`.

Bad input raises `DataError` naming the dataset, the row and the image; `iter_examples` can
count and skip bad rows instead, and reports which. With `workers > 1` it decodes and crops in
that many spawned processes, chunk by chunk and in row order, so that the records (and the
first error raised, and the rows skipped) are those of the serial build.
"""

import collections
import concurrent.futures
import dataclasses
import itertools
import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image

from spin_jax.data import geometry, records

REQUIRED_KEYS = ("imgname", "center", "scale")


class DataError(ValueError):
  """A dataset row that cannot be turned into an example."""


@dataclasses.dataclass(frozen=True)
class Annotations:
  """One SPIN annotation file, every optional field filled (N rows)."""

  imgname: np.ndarray  # (N,) str
  center: np.ndarray  # (N, 2) pixel indices
  scale: np.ndarray  # (N,)
  part: np.ndarray  # (N, 24, 3)
  openpose: np.ndarray  # (N, 25, 3)
  joints3d: np.ndarray  # (N, 24, 4)
  pose: np.ndarray  # (N, 72)
  betas: np.ndarray  # (N, 10)
  has_smpl: np.ndarray  # (N,) bool
  has_3d: bool
  gender: np.ndarray  # (N,) int32, -1 unknown

  def __len__(self) -> int:
    return len(self.imgname)

  def rows(self, start: int, stop: int) -> "Annotations":
    """Rows [start, stop) (what a build worker is sent)."""
    return dataclasses.replace(
      self,
      **{
        f.name: getattr(self, f.name)[start:stop]
        for f in dataclasses.fields(self)
        if f.name != "has_3d"
      },
    )


def find_annotation_file(manual_dir: Path, info: records.DatasetInfo) -> Path:
  manual_dir = Path(manual_dir)
  tried = []
  for name in info.npz:
    for folder in (manual_dir / "dataset_extras", manual_dir):
      tried.append(folder / name)
      if tried[-1].is_file():
        return tried[-1]
  raise FileNotFoundError(
    f"{info.name}: no annotation file; looked for {', '.join(map(str, tried))}. Put SPIN's "
    "dataset_extras/*.npz (SPIN's fetch_data.sh / preprocessing) in the manual directory."
  )


def read_annotations(path: Path, dataset: str) -> Annotations:
  """Reads and checks a SPIN annotation npz; errors name the file and what is wrong."""
  path = Path(path)
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise DataError(f"{dataset}: cannot read {path} as an npz file ({e})") from e
  missing = [k for k in REQUIRED_KEYS if k not in data]
  if missing:
    raise DataError(
      f"{dataset}: {path} lacks required key(s) {missing} (has {sorted(data)}); SPIN's files "
      "carry imgname, center and scale for every row"
    )
  n = len(data["imgname"])

  def get(key, shape, default=0.0):
    if key not in data:
      return np.full((n, *shape), default, np.float32)
    a = np.asarray(data[key], np.float32)
    if a.shape != (n, *shape):
      raise DataError(
        f"{dataset}: {path} key {key!r} has shape {a.shape}, expected {(n, *shape)} "
        f"({n} rows, as imgname)"
      )
    return a

  s = data.get("S")
  if s is not None and np.shape(s)[1:] == (24, 3):
    s = np.concatenate([s, np.ones((*np.shape(s)[:2], 1))], axis=2)
    data["S"] = s
  gender = np.full(n, -1, np.int32)
  if "gender" in data:
    g = np.asarray(data["gender"]).astype(str)
    gender = np.where(g == "m", 0, np.where(g == "f", 1, -1)).astype(np.int32)
  has_smpl = np.zeros(n, bool)
  if "has_smpl" in data:
    has_smpl = get("has_smpl", ()) > 0
  elif "pose" in data and "shape" in data:
    has_smpl[:] = True
  return Annotations(
    imgname=np.asarray(data["imgname"]).astype(str),
    center=get("center", (2,)),
    scale=get("scale", ()),
    part=get("part", (24, 3)),
    openpose=get("openpose", (25, 3)),
    joints3d=get("S", (24, 4)),
    pose=get("pose", (72,)),
    betas=get("shape", (10,)),
    has_smpl=has_smpl,
    has_3d="S" in data,
    gender=gender,
  )


def load_image(path: Path, where: str) -> Image.Image:
  if not path.is_file():
    raise DataError(f"{where}: image {path} not found")
  try:
    with Image.open(path) as im:
      im.load()  # decodes fully: a truncated file fails here, not later in training
      return im.convert("RGB")
  except Image.DecompressionBombError as e:  # not an OSError: a whole build would stop
    raise DataError(
      f"{where}: image {path} is larger than PIL's decompression-bomb limit ({e}); raise "
      "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted, or skip it with --skip_bad"
    ) from e
  except OSError as e:
    raise DataError(f"{where}: image {path} is unreadable or truncated ({e})") from e


def make_example(
  ann: Annotations,
  i: int,
  image_root: Path,
  info: records.DatasetInfo,
  margin: float,
  size: int,
  index: int | None = None,
) -> dict:
  """The record of row `i` of `ann`; `index` is its row in the annotation file (default `i`;
  a worker's `ann` holds a chunk of the rows)."""
  index = i if index is None else index
  where = f"{info.name} row {index} ({ann.imgname[i]})"
  center, scale = ann.center[i].astype(np.float64), float(ann.scale[i])
  if not (np.all(np.isfinite(center)) and np.isfinite(scale) and scale > 0):
    raise DataError(f"{where}: person box center={center.tolist()} scale={scale} is invalid")
  image = load_image(Path(image_root) / ann.imgname[i], where)
  w, h = image.size
  center = center + geometry.INDEX_TO_CONTINUOUS
  half = 100.0 * scale
  if (
    center[0] + half <= 0
    or center[0] - half >= w
    or center[1] + half <= 0
    or center[1] - half >= h
  ):
    raise DataError(
      f"{where}: person box (center {(center - 0.5).tolist()}, side {2 * half:.1f} px) lies "
      f"outside the {w}x{h} image"
    )
  crop = geometry.store_crop(image, center, scale, margin, size)
  kp = np.concatenate([ann.openpose[i], ann.part[i]]).astype(np.float64)
  present = kp[:, 2] > 0
  kp[:, :2] = geometry.store_keypoints(
    kp[:, :2] + geometry.INDEX_TO_CONTINUOUS, center, scale, margin, size
  )
  kp[~present] = 0.0
  ex = records.empty_labels()
  ex.update(
    image=records.encode_jpeg(crop, 95),
    keypoints=kp.astype(np.float32),
    joints3d=ann.joints3d[i],
    pose=ann.pose[i],
    betas=ann.betas[i],
    has_smpl=bool(ann.has_smpl[i]),
    has_3d=bool(ann.has_3d),
    gender=np.int32(ann.gender[i]),
    dataset_id=np.int32(info.dataset_id),
    index=np.int64(index),
    center=(center - geometry.INDEX_TO_CONTINUOUS).astype(np.float32),
    scale=np.float32(scale),
    margin=np.float32(margin),
    orig_shape=np.array([h, w], np.int32),
    imgname=str(ann.imgname[i]),
  )
  return ex


def iter_examples(
  ann: Annotations,
  image_root: Path,
  info: records.DatasetInfo,
  margin: float,
  size: int,
  skip_bad: bool = False,
  skipped: list | None = None,
  workers: int = 1,
  chunk: int = 64,
):
  """Yields (index, record) in row order; with `skip_bad`, bad rows are appended to `skipped`
  as (index, reason) and left out instead of raising. `workers > 1` makes the records in that
  many processes, `chunk` rows per task, at most two tasks per worker ahead of the consumer."""
  if workers < 1 or chunk < 1:
    raise ValueError(f"workers={workers}, chunk={chunk}: both must be >= 1")
  jobs = (
    (ann.rows(start, min(start + chunk, len(ann))), start, image_root, info, margin, size)
    + (skip_bad,)
    for start in range(0, len(ann), chunk)
  )
  results = (
    map(_chunk_examples, jobs) if workers == 1 else _ordered_map(_chunk_examples, jobs, workers)
  )
  for rows in results:
    for i, ex, reason in rows:
      if ex is not None:
        yield i, ex
      elif skipped is not None:
        skipped.append((i, reason))


def _chunk_examples(job) -> list[tuple[int, dict | None, str | None]]:
  """(index, record, None) or, with skip_bad, (index, None, reason) for each row of a chunk;
  without skip_bad the first bad row raises its DataError."""
  ann, start, image_root, info, margin, size, skip_bad = job
  out = []
  for j in range(len(ann)):
    try:
      out.append(
        (start + j, make_example(ann, j, image_root, info, margin, size, start + j), None)
      )
    except DataError as e:
      if not skip_bad:
        raise
      out.append((start + j, None, str(e)))
  return out


def _ordered_map(fn, jobs, workers: int):
  """`map(fn, jobs)` in `workers` spawned processes, results in order, with at most
  2 * workers jobs submitted ahead of the consumer (so memory stays bounded at any dataset
  size). A job's exception is raised here, in its place in the order, as the serial map would;
  the jobs not yet started are cancelled."""
  ctx = multiprocessing.get_context("spawn")  # the builder's process holds threads: never fork
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    jobs = iter(jobs)
    pending = collections.deque(pool.submit(fn, j) for j in itertools.islice(jobs, 2 * workers))
    try:
      while pending:
        result = pending.popleft().result()
        for j in itertools.islice(jobs, 1):
          pending.append(pool.submit(fn, j))
        yield result
    finally:
      for f in pending:
        f.cancel()
