"""The regressor: a ResNet backbone and HMR's iterative error feedback with SPIN's head.

`Regressor(images) -> Prediction(rotmat (B, 24, 3, 3), betas (B, 10), cam (B, 3))`, where
`cam = [s, tx, ty]` is HMR's weak-perspective camera. The head (SPIN_SPEC 3.1) iterates 3 times on
[feature, pose 6D (144), betas (10), cam (3)] -> fc1 (1024) -> dropout -> fc2 (1024) -> dropout ->
residual pose / betas / cam, starting from fixed mean parameters; like SPIN there is no ReLU
between fc1 and fc2 (SPIN_SPEC 12.13), and the three output layers start near zero (Xavier
uniform, gain 0.01).

The backbone keeps torchvision's ResNet layout and names (conv1, bn1, layer1..4 of blocks with
conv1/bn1/..., downsample), so ImageNet weights convert one to one (`spin_jax.weights`).
Presets: `resnet50` (SPIN's) and `small` (basic blocks, narrow; trains in minutes on a CPU).
Images are NHWC float, already normalised (`normalize_images`).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Float

from smpl_jax import rotations

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  block: str  # "bottleneck" (ResNet-50) or "basic"
  stages: tuple[int, ...]
  width: int  # channels of the stem and of the first stage


PRESETS = {
  "resnet50": BackboneSpec("bottleneck", (3, 4, 6, 3), 64),
  "resnet18": BackboneSpec("basic", (2, 2, 2, 2), 64),
  "small": BackboneSpec("basic", (1, 1, 1, 1), 16),
}


def normalize_images(images):
  """uint8 RGB (..., H, W, 3) -> float32 normalised with ImageNet mean and std."""
  return (jnp.asarray(images, jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD


def _bn(n, rngs):
  # torchvision's BatchNorm: eps 1e-5, momentum 0.1 (running = 0.9 running + 0.1 batch).
  return nnx.BatchNorm(n, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _conv(cin, cout, k, stride, rngs):
  pad = (k - 1) // 2
  return nnx.Conv(
    cin,
    cout,
    (k, k),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
    rngs=rngs,
  )


class Block(nnx.Module):
  """A torchvision BasicBlock or Bottleneck (stride on the 3x3 conv, as torchvision v1.5)."""

  def __init__(self, kind: str, cin: int, planes: int, stride: int, rngs: nnx.Rngs):
    self.kind = kind
    expansion = 4 if kind == "bottleneck" else 1
    cout = planes * expansion
    if kind == "bottleneck":
      self.conv1, self.bn1 = _conv(cin, planes, 1, 1, rngs), _bn(planes, rngs)
      self.conv2, self.bn2 = _conv(planes, planes, 3, stride, rngs), _bn(planes, rngs)
      self.conv3, self.bn3 = _conv(planes, cout, 1, 1, rngs), _bn(cout, rngs)
    else:
      self.conv1, self.bn1 = _conv(cin, planes, 3, stride, rngs), _bn(planes, rngs)
      self.conv2, self.bn2 = _conv(planes, planes, 3, 1, rngs), _bn(planes, rngs)
    if stride != 1 or cin != cout:
      self.downsample = nnx.List([_conv(cin, cout, 1, stride, rngs), _bn(cout, rngs)])
    else:
      self.downsample = None
    self.out_features = cout

  def __call__(self, x):
    y = nnx.relu(self.bn1(self.conv1(x)))
    if self.kind == "bottleneck":
      y = nnx.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
    else:
      y = self.bn2(self.conv2(y))
    skip = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
    return nnx.relu(y + skip)


class ResNet(nnx.Module):
  def __init__(self, spec: BackboneSpec, rngs: nnx.Rngs):
    self.conv1 = _conv(3, spec.width, 7, 2, rngs)
    self.bn1 = _bn(spec.width, rngs)
    cin = spec.width
    for i, n in enumerate(spec.stages):
      blocks = []
      for j in range(n):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(Block(spec.block, cin, spec.width * 2**i, stride, rngs))
        cin = blocks[-1].out_features
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.num_stages = len(spec.stages)
    self.out_features = cin

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = jax.lax.reduce_window(
      x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    for i in range(self.num_stages):
      for block in getattr(self, f"layer{i + 1}"):
        x = block(x)
    return x.mean(axis=(1, 2))  # global average pool (AvgPool2d(7) at 224 px)


@functools.partial(jax.tree_util.register_dataclass)
@dataclasses.dataclass(frozen=True)
class Prediction:
  rotmat: Float[jax.Array, "B 24 3 3"]
  betas: Float[jax.Array, "B 10"]
  cam: Float[jax.Array, "B 3"]  # weak perspective [s, tx, ty]


@dataclasses.dataclass(frozen=True)
class MeanParams:
  pose6d: np.ndarray  # (144,)
  betas: np.ndarray  # (10,)
  cam: np.ndarray  # (3,)


def load_mean_params(path) -> MeanParams:
  """SPIN's `smpl_mean_params.npz` (keys pose (144), shape (10), cam (3))."""
  with open(path, "rb") as fh, np.load(fh) as z:
    missing = {"pose", "shape", "cam"} - set(z.files)
    if missing:
      raise ValueError(f"{path}: not SPIN's smpl_mean_params.npz (lacks {sorted(missing)})")
    return MeanParams(
      np.asarray(z["pose"], np.float32).reshape(144),
      np.asarray(z["shape"], np.float32).reshape(10),
      np.asarray(z["cam"], np.float32).reshape(3),
    )


def open_mean_params(num_samples: int = 20_000, pose_scale: float = 0.55) -> MeanParams:
  """Mean parameters for the open model and the synthetic data: the chordal mean rotation of
  each joint over the synthetic pose distribution (`fitting.pose_sampler` at its mid scale),
  the body upright facing the camera (global orientation (pi, 0, 0)), betas 0, and HMR's mean
  camera [0.9, 0, 0]."""
  from fitting import pose_sampler

  body = pose_sampler.sample_body_poses(num_samples, seed=12345) * pose_scale
  mats = np.asarray(rotations.aa_to_rotmat(jnp.asarray(body.reshape(-1, 23, 3)))).mean(axis=0)
  u, _, vt = np.linalg.svd(mats)
  fix = np.ones((len(mats), 3))
  fix[:, 2] = np.linalg.det(u @ vt)
  mean = u @ (fix[:, :, None] * vt)  # nearest rotations: U diag(1, 1, det(U V^T)) V^T
  root = np.diag([1.0, -1.0, -1.0])[None]  # rotation by pi about x
  rot = np.concatenate([root, mean], axis=0)
  pose6d = np.asarray(rotations.rotmat_to_rot6d(jnp.asarray(rot, jnp.float32))).reshape(144)
  return MeanParams(
    pose6d.astype(np.float32), np.zeros(10, np.float32), np.array([0.9, 0, 0], np.float32)
  )


class Regressor(nnx.Module):
  """ResNet + HMR's iterative error feedback (SPIN's variant)."""

  def __init__(
    self,
    mean: MeanParams,
    backbone: str | BackboneSpec = "resnet50",
    num_iters: int = 3,
    hidden: int = 1024,
    dropout: float = 0.5,
    rngs: nnx.Rngs | None = None,
  ):
    rngs = rngs or nnx.Rngs(0)
    spec = PRESETS[backbone] if isinstance(backbone, str) else backbone
    self.backbone = ResNet(spec, rngs)
    feat = self.backbone.out_features
    self.num_iters = num_iters
    self.fc1 = nnx.Linear(feat + 157, hidden, rngs=rngs)
    self.drop1 = nnx.Dropout(dropout, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.drop2 = nnx.Dropout(dropout, rngs=rngs)
    small = nnx.initializers.variance_scaling(0.01**2, "fan_avg", "uniform")  # xavier, gain .01
    self.decpose = nnx.Linear(hidden, 144, kernel_init=small, rngs=rngs)
    self.decshape = nnx.Linear(hidden, 10, kernel_init=small, rngs=rngs)
    self.deccam = nnx.Linear(hidden, 3, kernel_init=small, rngs=rngs)
    # Fixed buffers (SPIN registers them; HMR trains them): not nnx.Param, so not optimised.
    self.init_pose = nnx.Variable(jnp.asarray(mean.pose6d))
    self.init_betas = nnx.Variable(jnp.asarray(mean.betas))
    self.init_cam = nnx.Variable(jnp.asarray(mean.cam))

  def __call__(self, images) -> Prediction:
    x = self.backbone(images)
    b = x.shape[0]
    pose = jnp.broadcast_to(self.init_pose[...], (b, 144))
    betas = jnp.broadcast_to(self.init_betas[...], (b, 10))
    cam = jnp.broadcast_to(self.init_cam[...], (b, 3))
    for _ in range(self.num_iters):
      h = self.drop1(self.fc1(jnp.concatenate([x, pose, betas, cam], axis=1)))
      h = self.drop2(self.fc2(h))
      pose = pose + self.decpose(h)
      betas = betas + self.decshape(h)
      cam = cam + self.deccam(h)
    rotmat = rotations.rot6d_to_rotmat(pose.reshape(b, 24, 6))
    return Prediction(rotmat=rotmat, betas=betas, cam=cam)
