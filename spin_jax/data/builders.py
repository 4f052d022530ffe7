"""TFDS builders (array_record, no TensorFlow) for SPIN's datasets and the synthetic one.

    spin_format/<config>    SPIN's preprocessed files from a manual directory; one config per
                            dataset (h36m, lsp_orig, mpii, lspet, coco, mpi_inf_3dhp; eval sets
                            h36m_p1, h36m_p2, pw3d, mpi_inf_3dhp_test, lsp_test)
    spin_synthetic/<config> people rendered from a body model; splits train/validation/test

Both write `records.features()`. Images are given to TFDS as JPEG bytes (TFDS would need
TensorFlow to encode numpy arrays), and read back with `open_source`, which skips TFDS's image
decoding so that the input pipeline decodes in its workers. Use `spin_jax.data.build` (the CLI)
rather than these classes directly.
"""

import dataclasses
import json
import multiprocessing
from pathlib import Path

import tensorflow_datasets as tfds

from spin_jax.data import records, spin_format

VERSION = tfds.core.Version("1.0.0")
BUILD_REPORT = "build_report.json"  # spin_format: annotation file, its rows, skipped rows
EXPORTS = "exports.json"  # keypoint files exported for the fitter (`build export`)
DEFAULT_MARGIN = 1.5


@dataclasses.dataclass
class SpinFormatConfig(tfds.core.BuilderConfig):
  margin: float = DEFAULT_MARGIN  # stored crop side / person box side
  crop_size: int = 336  # stored crop pixels


class SpinFormat(tfds.core.GeneratorBasedBuilder):
  """SPIN's preprocessed datasets (SPIN_SPEC 8), person-centred crops with a margin."""

  VERSION = VERSION
  BUILDER_CONFIGS = [
    SpinFormatConfig(name=d.config, description=f"SPIN's {d.name} ({'/'.join(d.npz)})")
    for d in records.DATASETS
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  The manual directory holds SPIN's annotation files, `dataset_extras/<file>.npz` (from SPIN's
  fetch_data.sh or its preprocessing scripts), and each dataset's images under
  `<manual_dir>/<image dir>` (h36m, lsp_original, mpii, hr-lspet, coco, mpi_inf_3dhp, 3dpw,
  lsp), with the paths that the npz's `imgname` gives; or pass `image_root`. These datasets are
  licensed: obtain them from their owners.
  """

  def __init__(self, *, image_root=None, skip_bad: bool = False, num_workers: int = 1, **kwargs):
    self._image_root = image_root
    self._skip_bad = skip_bad
    self._num_workers = num_workers  # decoding processes (spin_format.iter_examples)
    self.skipped: list[tuple[int, str]] = []
    self.num_rows: int | None = None  # rows of the annotation file (index range)
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(features=records.features())

  def _split_generators(self, dl_manager):
    info = records.dataset_info(self.builder_config.name)
    manual = Path(dl_manager.manual_dir)
    ann = spin_format.read_annotations(spin_format.find_annotation_file(manual, info), info.name)
    root = Path(self._image_root) if self._image_root else manual / info.image_dir
    self.num_rows = len(ann)
    return {"train" if info.train else "test": self._generate_examples(ann, root, info)}

  def _generate_examples(self, ann, root, info):
    cfg = self.builder_config
    yield from spin_format.iter_examples(
      ann, root, info, cfg.margin, cfg.crop_size, self._skip_bad, self.skipped, self._num_workers
    )


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  num_train: int = 10_000
  num_validation: int = 1_000
  num_test: int = 1_000
  resolution: int = 224  # person box in pixels (stored crops are resolution * margin)
  margin: float = DEFAULT_MARGIN
  fraction_2d_only: float = 0.5
  occluder_prob: float = 0.3
  model: str = ""  # SMPL .pkl/.npz; "" = the embedded open model
  seed: int = 0

  def scene(self):
    from spin_jax.data.synthetic import SceneOptions

    return SceneOptions(
      resolution=self.resolution,
      margin=self.margin,
      fraction_2d_only=self.fraction_2d_only,
      occluder_prob=self.occluder_prob,
    )


class SpinSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic people rendered from a body model (see `spin_jax.data.synthetic`)."""

  VERSION = VERSION
  BUILDER_CONFIGS = [
    SyntheticConfig(name="default", description="10,000 / 1,000 / 1,000 at 224 px"),
    SyntheticConfig(
      name="small",
      num_train=2_000,
      num_validation=200,
      num_test=200,
      description="2,000 / 200 / 200",
    ),
  ]

  def __init__(self, *, num_workers: int = 1, **kwargs):
    self._num_workers = num_workers
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(features=records.features())

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "validation": cfg.num_validation, "test": cfg.num_test}
    return {s: self._generate_examples(s, n) for s, n in sizes.items() if n > 0}

  def _generate_examples(self, split: str, num: int):
    chunk = 64
    jobs = [(split, s, min(s + chunk, num)) for s in range(0, num, chunk)]
    state = _config_state(self.builder_config)
    if self._num_workers <= 1:
      _init_worker(state)
      for job in jobs:
        yield from _render_chunk(job)
      return
    ctx = multiprocessing.get_context("spawn")  # JAX is multithreaded: never fork it
    with ctx.Pool(self._num_workers, initializer=_init_worker, initargs=(state,)) as pool:
      for examples in pool.imap(_render_chunk, jobs):
        yield from examples


def _config_state(cfg: SyntheticConfig) -> dict:
  return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(SyntheticConfig) if f.init}


_WORKER: dict = {}


def _init_worker(state: dict) -> None:
  import smpl_jax
  from spin_jax.data import synthetic

  cfg = SyntheticConfig(**state)
  _WORKER["cfg"] = cfg
  _WORKER["renderer"] = synthetic.Renderer.create(smpl_jax.load_model(cfg.model or None))


def _render_chunk(job) -> list:
  from spin_jax.data import synthetic

  split, start, stop = job
  cfg = _WORKER["cfg"]
  return list(synthetic.generate(_WORKER["renderer"], cfg.scene(), cfg.seed, split, start, stop))


def dataset_dir(data_dir, name: str) -> Path:
  """data_dir/<builder>/<config>/<version> for name 'spin_synthetic/default' etc."""
  path = Path(data_dir) / name / str(VERSION)
  if not (path / "dataset_info.json").is_file():
    raise FileNotFoundError(
      f"no prepared dataset {name!r} in {data_dir} (looked for {path}); build it with "
      "`python -m spin_jax.data.build`"
    )
  return path


def open_source(data_dir, name: str, split: str):
  """Random-access source of one split; images and masks stay encoded (decoded in workers)."""
  builder = tfds.builder_from_directory(str(dataset_dir(data_dir, name)))
  if split not in builder.info.splits:
    raise ValueError(f"{name} has no split {split!r}; it has {sorted(builder.info.splits)}")
  skip = tfds.decode.SkipDecoding()
  return builder.as_data_source(split=split, decoders={"image": skip, "part_mask": skip})


def split_sizes(data_dir, name: str) -> dict[str, int]:
  builder = tfds.builder_from_directory(str(dataset_dir(data_dir, name)))
  return {k: int(v.num_examples) for k, v in builder.info.splits.items()}


def read_json(path: Path, default):
  return json.loads(path.read_text()) if path.is_file() else default


def annotation_identities(data_dir, name: str, split: str) -> list[dict]:
  """The files whose rows a prepared split's records index, each {"file", "sha256"}: the
  annotation npz a `spin_format` dataset was built from (its `build_report.json`) and the
  keypoint files exported from the split for the fitter (`build export`, `exports.json`).
  A fits file is for this split only if it was made from one of them."""
  path = dataset_dir(data_dir, name)
  out = []
  report = read_json(path / BUILD_REPORT, {})
  if "annotation_sha256" in report:
    out.append({"file": report["annotation_file"], "sha256": report["annotation_sha256"]})
  for e in read_json(path / EXPORTS, []):
    if e["split"] == split:
      out.append({"file": e["file"], "sha256": e["sha256"]})
  return out
