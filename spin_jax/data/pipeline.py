"""The input pipeline: grain over the TFDS sources, SPIN's augmentation and mixing.

    opts = DataOptions(data_dir="data/tfds", datasets=("spin_synthetic/default",))
    it = iter(make_dataset(opts).to_iter_dataset(read_options(opts)))
    batch = next(it)               # dict of numpy arrays, leading axis = this process's batch
    state = it.get_state()         # or orbax: grain.checkpoint.CheckpointSave(it)

Determinism: each dataset is shuffled with its own seed and reshuffled every epoch; datasets
are interleaved in fixed proportions (`MapDataset.mix`); the augmentation of element k is drawn
from a generator seeded by (seed, k). Element k of the global stream is therefore the same
whatever the number of threads, processes or restarts, and process p of n takes elements
p, p + n, p + 2n, ... (`ShardByJaxProcess` semantics), so `jax.make_array_from_process_local_data`
assembles the same global batch a single process would see.

Batch fields (B = batch_size / process_count, R = img_res):
  image (B, R, R, 3) uint8 RGB, augmented (normalise on device: ImageNet mean / std)
  keypoints (B, 49, 3): x, y in SPIN's normalised crop coordinates [-1, 1], confidence
  joints3d (B, 24, 4), pose (B, 72), betas (B, 10): augmented like the image
  has_smpl, has_3d (B,) bool; gender, dataset_id, index (B,) int32
  is_flipped (B,) bool, rot_deg (B,) float32, scale (B,) float32: the augmentation applied,
      which the SPIN fits dictionary needs to gather and scatter its fits
  part_mask (B, R, R) uint8 when `with_masks`; cam_t, has_cam when not augmenting (eval)
"""

import dataclasses
import io

import cv2
import grain
import numpy as np
from PIL import Image

from smpl_jax.joints import SMPL_JOINTS_FLIP_PERM
from spin_jax.data import builders, geometry, records
from spin_jax.data.geometry import AugmentOptions, AugmentParams

# SPIN's mixing (SPIN_SPEC 7.2): 30 % H36M, 60 % in-the-wild in proportion to size, 10 %
# MPI-INF-3DHP.
SPIN_FIXED = {"h36m": 0.3, "mpi-inf-3dhp": 0.1}
SPIN_IN_THE_WILD = ("lsp-orig", "mpii", "lspet", "coco")
SPIN_IN_THE_WILD_SHARE = 0.6
_FLIP_PARTS = np.concatenate([[0], 1 + np.asarray(SMPL_JOINTS_FLIP_PERM)]).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class DataOptions:
  data_dir: str
  datasets: tuple[
    str, ...
  ]  # prepared TFDS names, e.g. "spin_synthetic/default", "spin_format/h36m"
  split: str = "train"
  weights: tuple[float, ...] | None = None  # None: SPIN's mixing, or by size for other datasets
  batch_size: int = 64  # global, over all processes
  img_res: int = 224
  augment: AugmentOptions | None = AugmentOptions()  # None: centre crop, no augmentation
  shuffle: bool = True
  num_epochs: int | None = None  # None: forever
  drop_remainder: bool = True
  ignore_3d: bool = False  # SPIN's "unpaired" setting: has_smpl = has_3d = 0 everywhere
  with_masks: bool = False
  seed: int = 0
  num_threads: int = 2  # reading and augmenting threads (of each worker process, if any)
  prefetch: int = 4
  num_processes: int = 0  # grain worker processes (mp_prefetch); 0 = threads in this process


def spin_mixing(sizes: dict[str, int]) -> dict[str, float]:
  """SPIN's proportions for the SPIN training sets among `sizes` (name -> number of
  examples), renormalised over those present."""
  out = {}
  itw = sum(sizes.get(n, 0) for n in SPIN_IN_THE_WILD)
  for name, n in sizes.items():
    if name in SPIN_FIXED:
      out[name] = SPIN_FIXED[name]
    elif name in SPIN_IN_THE_WILD:
      out[name] = SPIN_IN_THE_WILD_SHARE * n / itw
    else:
      raise ValueError(f"{name!r} is not one of SPIN's training sets; give explicit weights")
  total = sum(out.values())
  return {k: v / total for k, v in out.items()}


def mixing_weights(opts: DataOptions, sizes: list[int]) -> list[float]:
  if opts.weights is not None:
    if len(opts.weights) != len(opts.datasets):
      raise ValueError(
        f"{len(opts.weights)} mixing weights for {len(opts.datasets)} datasets {opts.datasets}"
      )
    return list(opts.weights)
  if len(opts.datasets) == 1:
    return [1.0]
  spin_names = []
  for name in opts.datasets:
    builder, _, config = name.partition("/")
    info = records.dataset_info(config) if builder == "spin_format" else None
    spin_names.append(info.name if info is not None and info.train else None)
  if all(spin_names):
    mix = spin_mixing(dict(zip(spin_names, sizes)))
    return [mix[n] for n in spin_names]
  return [n / sum(sizes) for n in sizes]


def decode_image(data: bytes) -> Image.Image:
  """JPEG (or any Pillow format) bytes -> an RGB image (no copy when it is RGB already)."""
  im = Image.open(io.BytesIO(data))
  im.load()
  return im if im.mode == "RGB" else im.convert("RGB")


def apply_gain(image, gain) -> np.ndarray:
  """SPIN's per-channel colour noise: round(clip(pixel * gain, 0, 255)) as uint8, through one
  256-entry table per channel (the same numbers as doing it in float32, 6x faster)."""
  levels = np.arange(256, dtype=np.float32)[:, None] * np.asarray(gain, np.float32)
  lut = (np.clip(levels, 0, 255) + 0.5).astype(np.uint8)  # (256, 3)
  return cv2.LUT(np.ascontiguousarray(np.asarray(image)), lut[:, None, :])


def process(ex: dict, aug: AugmentParams, opts: DataOptions) -> dict:
  """One stored record -> one training example (see the module docstring)."""
  img = decode_image(ex["image"])
  size = img.size[0]
  nominal = size / float(ex["margin"])
  res = opts.img_res
  mid = (size / 2.0, size / 2.0)
  affine = geometry.crop_affine(mid, aug.scale * nominal, res, aug.rot_deg, aug.flip)
  pixels = apply_gain(geometry.warp(img, affine, res), aug.channel_gain)  # one resample
  has_smpl = bool(ex["has_smpl"]) and not opts.ignore_3d
  has_3d = bool(ex["has_3d"]) and not opts.ignore_3d
  out = {
    "image": pixels,
    "keypoints": geometry.augment_keypoints(ex["keypoints"], affine, aug.flip, res),
    "joints3d": geometry.augment_joints3d(ex["joints3d"], aug),
    "pose": geometry.augment_pose(ex["pose"], aug),
    "betas": np.asarray(ex["betas"], np.float32),
    "has_smpl": np.bool_(has_smpl),
    "has_3d": np.bool_(has_3d),
    "gender": np.int32(ex["gender"]),
    "dataset_id": np.int32(ex["dataset_id"]),
    "index": np.int32(ex["index"]),
    "is_flipped": np.bool_(aug.flip),
    "rot_deg": np.float32(aug.rot_deg),
    "scale": np.float32(aug.scale),
  }
  if opts.with_masks:
    if ex["has_mask"]:
      with Image.open(io.BytesIO(ex["part_mask"])) as m:
        mask = geometry.warp(m.convert("L"), affine, res, nearest=True)
      if aug.flip:  # left and right parts swap as the joints do
        mask = _FLIP_PARTS[mask]
    else:
      mask = np.zeros((res, res), np.uint8)
    out["part_mask"] = mask
  if opts.augment is None:
    out["cam_t"] = np.asarray(ex["cam_t"], np.float32)
    out["has_cam"] = np.bool_(ex["has_cam"])
  return out


class Augment(grain.transforms.RandomMap):
  """SPIN's augmentation: parameters from the element's generator, then `process`."""

  def __init__(self, opts: DataOptions):
    self.opts = opts

  def random_map(self, element, rng: np.random.Generator):
    return process(element, geometry.sample_augment(rng, self.opts.augment), self.opts)


class CentreCrop(grain.transforms.Map):
  def __init__(self, opts: DataOptions):
    self.opts = opts

  def map(self, element):
    return process(element, AugmentParams(), self.opts)


class ProcessRows(grain.transforms.Map):
  """Local element i of process p -> element k B + p L + j of the one-process stream, with
  k, j = divmod(i, L), L = B / P: the processes' k-th batches, side by side, are the one-process
  k-th batch in its order (so a run on P hosts draws the same examples, augmentations and
  dropout rows as on one), and each process decodes only its own rows."""

  def __init__(self, ds, process_index: int, process_count: int, batch_size: int):
    self.ds, self.p, self.n, self.b = ds, process_index, process_count, batch_size

  def __len__(self) -> int:  # this process's rows of a finite stream (all of an infinite one)
    local = self.b // self.n
    full, rest = divmod(len(self.ds), self.b)
    return full * local + min(max(rest - self.p * local, 0), local)

  def map(self, i):
    k, j = divmod(int(i), self.b // self.n)
    return self.ds[k * self.b + self.p * (self.b // self.n) + j]


def make_dataset(
  opts: DataOptions, process_index: int | None = None, process_count: int | None = None
) -> grain.MapDataset:
  """The batched, mixed, augmented MapDataset of this process (`[k]` is its k-th batch)."""
  if process_index is None or process_count is None:
    import jax

    process_index, process_count = jax.process_index(), jax.process_count()
  if opts.batch_size % process_count:
    raise ValueError(f"batch_size {opts.batch_size} is not divisible by {process_count} processes")
  parts, sizes = [], []
  for k, name in enumerate(opts.datasets):
    src = builders.open_source(opts.data_dir, name, opts.split)
    sizes.append(len(src))
    ds = grain.MapDataset.source(src)
    if opts.shuffle:
      ds = ds.seed(opts.seed * 1009 + k).shuffle()
    parts.append(ds.repeat(opts.num_epochs) if opts.num_epochs != 1 else ds)
  weights = mixing_weights(opts, sizes)
  ds = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
  if opts.augment is None:
    ds = ds.map(CentreCrop(opts))
  else:
    ds = ds.random_map(Augment(opts), seed=opts.seed)
  if process_count > 1:
    rows = ProcessRows(ds, process_index, process_count, opts.batch_size)
    ds = grain.MapDataset.range(len(rows)).map(rows)
  return ds.batch(opts.batch_size // process_count, drop_remainder=opts.drop_remainder)


def read_options(opts: DataOptions) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=opts.num_threads, prefetch_buffer_size=opts.prefetch)


def make_iterator(opts: DataOptions, **kwargs):
  """A checkpointable iterator (`get_state` / `set_state`, or orbax via
  `grain.checkpoint.CheckpointSave`) over this process's batches.

  With `opts.num_processes > 0` the batches are made in that many spawned grain workers
  (`mp_prefetch`), each with `opts.num_threads` threads; worker w makes batches w, w + n, ...
  and they come back in order, so the stream is the one a single process makes. Close such an
  iterator (`it.close()`) when done with it to stop its workers. A script that uses it needs an
  `if __name__ == "__main__":` guard (spawn)."""
  if opts.num_processes < 0:
    raise ValueError(f"num_processes={opts.num_processes}: must be >= 0")
  ds = make_dataset(opts, **kwargs).to_iter_dataset(read_options(opts))
  if opts.num_processes:
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain reads its absl flags (defaults) when it spawns
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=opts.num_processes))
  return iter(ds)
