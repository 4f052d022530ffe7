"""Typed training options. Config files (ml_collections, `experiments/configs/*.py`) override
these defaults, which are SPIN's (SPIN_SPEC 7.1) unless a comment says otherwise, and are turned
into these frozen dataclasses at the boundary (`from_config_dict`); unknown keys are errors."""

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  backbone: str = "resnet50"  # "resnet50", "resnet18" or "small"
  img_res: int = 224
  num_iters: int = 3
  dropout: float = 0.5  # in the iterative head, after fc1 and fc2
  mean_params: str = ""  # SPIN's smpl_mean_params.npz; "" = computed for the open model
  pretrained: str = ""  # torchvision ResNet-50 weights (.safetensors, or .pth with torch)
  # SPIN's model_checkpoint.pt (SPIN's --pretrained_checkpoint; needs torch): the whole
  # regressor (backbone resnet50); loaded after `pretrained`, it replaces every tensor
  pretrained_checkpoint: str = ""


@dataclasses.dataclass(frozen=True)
class LossOptions:
  keypoint: float = 5.0  # 2D and 3D keypoints
  pose: float = 1.0
  betas: float = 0.001
  shape: float = 0.0  # per-vertex L1 against the fit (needs full meshes)
  openpose: float = 0.0  # weight of the OpenPose rows in the network's 2D loss
  gt: float = 1.0  # weight of the ground-truth rows
  scale: float = 60.0  # SPIN multiplies the sum by 60


@dataclasses.dataclass(frozen=True)
class FitOptions:
  run: bool = True  # SPIN proper; False = HMR-style: ground truth (and data.fits_files) only
  num_iters: int = 100  # per stage (camera, body)
  solver: str = "adam"
  step_size: float = 0.01
  threshold: float = 100.0  # px^2: fits scoring above this do not supervise
  require_success: bool = False  # also require a new fit to beat its own start (not SPIN)
  fit_gt: bool = False  # also fit samples whose ground-truth SMPL overrides the fit (SPIN does)
  chunks: int = 1  # fit in this many chunks, only those holding samples without ground truth
  max_beta: float = 3.0  # fits with any |beta| above this supervise betas with zeros


@dataclasses.dataclass(frozen=True)
class DataConfig:
  data_dir: str = "data/tfds"
  train: tuple[str, ...] = ("spin_synthetic/default",)
  weights: tuple[float, ...] = ()  # () = SPIN's mixing / by size
  val: str = "spin_synthetic/default"
  val_split: str = "validation"
  val_examples: int = 1000
  ignore_3d: bool = False
  build_synthetic: bool = True  # build spin_synthetic/<config> when it is missing
  synthetic_sizes: tuple[int, int, int] = (10_000, 1_000, 1_000)
  # "<dataset>=<fits.npz>" from python -m fitting.cli, or "<dataset>=<dataset>_fits.npy" (SPIN's)
  fits_files: tuple[str, ...] = ()
  num_threads: int = 2  # input threads (of each worker process, if any)
  num_processes: int = 0  # grain worker processes (mp_prefetch); 0 = threads only


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  workdir: str = "outputs/train"
  body_model: str = ""  # SMPL .pkl/.npz; "" = the open model
  prior: str = ""  # gmm_08.pkl; "" = the open prior
  seed: int = 0
  batch_size: int = 64
  lr: float = 5e-5
  grad_clip: float = 0.0  # global-norm clipping before Adam; 0 = off (SPIN)
  steps: int = 100_000
  log_every: int = 100
  eval_every: int = 1000
  checkpoint_every: int = 1000
  image_every: int = 1000
  keep_checkpoints: int = 2
  skip_nonfinite: bool = False  # skip (and count) a batch whose loss or gradients are not finite
  model: ModelOptions = ModelOptions()
  loss: LossOptions = LossOptions()
  fit: FitOptions = FitOptions()
  data: DataConfig = DataConfig()

  def __post_init__(self):
    positive = ("batch_size", "log_every", "eval_every", "checkpoint_every", "image_every")
    for name in positive + ("keep_checkpoints",):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(
          f"--config.{name}={value!r}: must be a positive integer (an interval in steps or a "
          "count); to do something rarely, give it a large value"
        )
    if not isinstance(self.steps, int) or self.steps < 0:
      raise ValueError(f"--config.steps={self.steps!r}: must be an integer >= 0")


def _convert(cls, values: dict, where: str):
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(
      f"unknown option(s) {unknown} in {where or 'config'}; known: {sorted(fields)}"
    )
  hints = typing.get_type_hints(cls)
  out = {}
  for name, value in values.items():
    t = hints[name]
    if dataclasses.is_dataclass(t):
      out[name] = _convert(t, dict(value), f"{where}.{name}".strip("."))
    elif typing.get_origin(t) is tuple and value is not None:
      out[name] = tuple(value)
    else:
      out[name] = value
  return cls(**out)


def from_config_dict(cd) -> TrainConfig:
  """An ml_collections ConfigDict (or a plain dict) -> TrainConfig."""
  values = cd.to_dict() if hasattr(cd, "to_dict") else dict(cd)
  return _convert(TrainConfig, values, "")


def default_config_dict():
  """A ConfigDict of every option at its default: config files start from it, so each option
  can be overridden from the command line (--config.fit.num_iters=50)."""
  import ml_collections

  return ml_collections.ConfigDict(dataclasses.asdict(TrainConfig()))
