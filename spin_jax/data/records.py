"""What a stored example holds, and the datasets this project knows.

Every dataset, real or synthetic, is stored with one schema (`FEATURES`) so that datasets mix
without adapters. An example is a person-centred crop with a margin around SPIN's person box
(so that augmentation can zoom out and rotate without running out of pixels), and labels in
that crop's pixels:

* `image`: JPEG, `S x S` pixels. The crop covers a square of side `margin * 200 * scale`
  (original-image pixels) centred on the person box `center`; the nominal person box, side
  `200 * scale`, is therefore the central `S / margin` pixels.
* `keypoints` (49, 3): SPIN's 49 joints (25 OpenPose rows, then 24 ground-truth rows) as
  (x, y, confidence) in continuous crop pixels: pixel (u, v) covers [u, u + 1) x [v, v + 1)
  and its centre is (u + 0.5, v + 0.5). Rows with confidence 0 are absent.
* `joints3d` (24, 4): root-centred 3D joints in metres in the camera frame (x right, y down,
  z forward) plus a validity column; `pose` (72) axis-angle SMPL pose with the global
  orientation in that camera frame; `betas` (10); `cam_t` (3) the camera translation in SPIN's
  convention (focal 5000 px on the nominal box rendered at 224 px, principal point at its
  centre), known only for synthetic data.
* flags `has_smpl`, `has_3d`, `has_cam`, `has_mask`; `gender` (-1 unknown, 0 male, 1 female);
  `part_mask` (PNG, 0 = background, 1 + SMPL part index), a 1x1 zero image when absent.
* `dataset_id` and `index`: the dataset and row of the source annotation file. TFDS stores
  records shuffled, so these, not the record position, key the SPIN fits dictionary.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

NUM_KEYPOINTS = 49
NUM_J24 = 24


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """One of SPIN's dataset files. `name` is SPIN's config key, `config` the TFDS config name."""

  name: str
  config: str
  dataset_id: int
  npz: tuple[str, ...]  # accepted file names in dataset_extras/ (first = SPIN's config.py)
  image_dir: str  # default image root under the manual directory
  train: bool


# Ids are stable: they key fits dictionaries and checkpoints. Training sets come in SPIN's
# mixing order (SPIN_SPEC 7.2).
DATASETS = (
  DatasetInfo("h36m", "h36m", 0, ("h36m_train.npz",), "h36m", True),
  DatasetInfo(
    "lsp-orig", "lsp_orig", 1, ("lsp_dataset_original_train.npz",), "lsp_original", True
  ),
  DatasetInfo("mpii", "mpii", 2, ("mpii_train.npz",), "mpii", True),
  DatasetInfo("lspet", "lspet", 3, ("hr-lspet_train.npz",), "hr-lspet", True),
  DatasetInfo("coco", "coco", 4, ("coco_2014_train.npz",), "coco", True),
  DatasetInfo(
    "mpi-inf-3dhp", "mpi_inf_3dhp", 5, ("mpi_inf_3dhp_train.npz",), "mpi_inf_3dhp", True
  ),
  DatasetInfo("h36m-p1", "h36m_p1", 10, ("h36m_valid_protocol1.npz",), "h36m", False),
  DatasetInfo("h36m-p2", "h36m_p2", 11, ("h36m_valid_protocol2.npz",), "h36m", False),
  DatasetInfo("3dpw", "pw3d", 12, ("3dpw_test.npz",), "3dpw", False),
  # SPIN's config names the file mpi_inf_3dhp_valid.npz, its preprocessing writes
  # mpi_inf_3dhp_test.npz (SPIN_SPEC 12.10): both are accepted.
  DatasetInfo(
    "mpi-inf-3dhp-test",
    "mpi_inf_3dhp_test",
    13,
    ("mpi_inf_3dhp_valid.npz", "mpi_inf_3dhp_test.npz"),
    "mpi_inf_3dhp",
    False,
  ),
  DatasetInfo("lsp", "lsp_test", 14, ("lsp_dataset_test.npz",), "lsp", False),
)
SYNTHETIC_ID = 20  # + split offset: train 20, validation 21, test 22
SYNTHETIC_SPLITS = ("train", "validation", "test")
TRAIN_SETS = tuple(d.name for d in DATASETS if d.train)


def dataset_info(name: str) -> DatasetInfo:
  for d in DATASETS:
    if name in (d.name, d.config):
      return d
  known = ", ".join(d.name for d in DATASETS)
  raise ValueError(f"unknown SPIN dataset {name!r}; known: {known}")


def features():
  """The TFDS FeaturesDict of a record (TFDS is imported here, not with this module, so that
  the build's decoding workers start without it)."""
  import tensorflow_datasets as tfds

  f32 = np.float32
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      "part_mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      "keypoints": tfds.features.Tensor(shape=(NUM_KEYPOINTS, 3), dtype=f32),
      "joints3d": tfds.features.Tensor(shape=(NUM_J24, 4), dtype=f32),
      "pose": tfds.features.Tensor(shape=(72,), dtype=f32),
      "betas": tfds.features.Tensor(shape=(10,), dtype=f32),
      "cam_t": tfds.features.Tensor(shape=(3,), dtype=f32),
      "has_smpl": np.bool_,
      "has_3d": np.bool_,
      "has_cam": np.bool_,
      "has_mask": np.bool_,
      "gender": np.int32,
      "dataset_id": np.int32,
      "index": np.int64,
      "center": tfds.features.Tensor(shape=(2,), dtype=f32),
      "scale": f32,
      "margin": f32,
      "orig_shape": tfds.features.Tensor(shape=(2,), dtype=np.int32),
      "imgname": tfds.features.Text(),
    }
  )


def encode_jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
  buf = io.BytesIO()
  img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
  img.save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def encode_png(mask: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.asarray(mask, np.uint8).reshape(np.shape(mask)[:2])).save(buf, format="PNG")
  return buf.getvalue()


EMPTY_MASK_PNG = encode_png(np.zeros((1, 1), np.uint8))


def empty_labels() -> dict:
  """Label fields of an example that has none of them (2D-only data fills in keypoints)."""
  return {
    "part_mask": EMPTY_MASK_PNG,
    "has_mask": False,
    "joints3d": np.zeros((NUM_J24, 4), np.float32),
    "pose": np.zeros(72, np.float32),
    "betas": np.zeros(10, np.float32),
    "cam_t": np.zeros(3, np.float32),
    "has_smpl": False,
    "has_3d": False,
    "has_cam": False,
    "gender": np.int32(-1),
  }
