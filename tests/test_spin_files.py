"""SPIN's released files: `model_checkpoint.pt` as the Flax regressor, `<dataset>_fits.npy` as
training fits. The checkpoint test writes random weights in the key layout of SPIN's
`models/hmr.py` from a torch module written here (ResNet-50 bottlenecks, the iterative head and
SPIN's 6D -> rotation matrix, no torchvision), and compares the whole forward."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from smpl_jax.files import write_npz_atomic
from spin_jax import fits as fits_lib
from spin_jax import spin_files
from spin_jax.model import MeanParams, Regressor, normalize_images

torch = pytest.importorskip("torch")
nn = torch.nn


class _Bottleneck(nn.Module):
  def __init__(self, cin, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = None
    if stride != 1 or cin != planes * 4:
      self.downsample = nn.Sequential(
        nn.Conv2d(cin, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
      )

  def forward(self, x):
    relu = torch.relu
    y = relu(self.bn1(self.conv1(x)))
    y = relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return relu(y + (x if self.downsample is None else self.downsample(x)))


def _rot6d_to_rotmat_spin(x):
  """SPIN's utils/geometry.py convention, written independently: view (-1, 3, 2), columns."""
  x = x.reshape(-1, 3, 2)
  a1, a2 = x[:, :, 0], x[:, :, 1]
  b1 = a1 / a1.norm(dim=1, keepdim=True)
  a2 = a2 - (b1 * a2).sum(dim=1, keepdim=True) * b1
  b2 = a2 / a2.norm(dim=1, keepdim=True)
  return torch.stack([b1, b2, torch.linalg.cross(b1, b2)], dim=-1)


class _HMR(nn.Module):
  """SPIN's HMR: the names and shapes of its state dict, its forward in eval mode (global
  average pooling: AvgPool2d(7) at 224 px, any size here)."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
      blocks = []
      for j in range(n):
        blocks.append(_Bottleneck(cin, planes, 2 if (i > 0 and j == 0) else 1))
        cin = planes * 4
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.fc1 = nn.Linear(2048 + 144 + 10 + 3, 1024)
    self.drop1 = nn.Dropout()
    self.fc2 = nn.Linear(1024, 1024)
    self.drop2 = nn.Dropout()
    self.decpose = nn.Linear(1024, 144)
    self.decshape = nn.Linear(1024, 10)
    self.deccam = nn.Linear(1024, 3)
    self.register_buffer("init_pose", torch.zeros(1, 144))
    self.register_buffer("init_shape", torch.zeros(1, 10))
    self.register_buffer("init_cam", torch.zeros(1, 3))

  def forward(self, x):
    x = torch.relu(self.bn1(self.conv1(x)))
    x = nn.functional.max_pool2d(x, 3, 2, 1)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    xf = x.mean(dim=(2, 3))
    b = xf.shape[0]
    pose, shape, cam = (t.expand(b, -1) for t in (self.init_pose, self.init_shape, self.init_cam))
    for _ in range(3):
      h = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat([xf, pose, shape, cam], 1)))))
      pose = self.decpose(h) + pose
      shape = self.decshape(h) + shape
      cam = self.deccam(h) + cam
    return _rot6d_to_rotmat_spin(pose).view(b, 24, 3, 3), shape, cam


@pytest.fixture(scope="module")
def spin_net():
  """The torch HMR with random weights, random BatchNorm statistics (so they matter) and random
  mean-parameter buffers, in eval mode."""
  torch.manual_seed(0)
  net = _HMR()
  g = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(0.5 + torch.rand(n, generator=g))
        m.bias.copy_(0.2 * torch.randn(n, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
        m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    net.init_pose.copy_(torch.randn(1, 144, generator=g))
    net.init_shape.copy_(torch.randn(1, 10, generator=g))
    net.init_cam.copy_(torch.tensor([[0.9, 0.1, -0.1]]))
  return net.eval()


def _abstract_state():
  zeros = MeanParams(np.zeros(144, np.float32), np.zeros(10, np.float32), np.zeros(3, np.float32))
  model = nnx.eval_shape(lambda: Regressor(zeros, "resnet50", rngs=nnx.Rngs(0)))
  return nnx.split(model, nnx.Param, ...)[1:]


def test_spin_checkpoint_predicts_as_spin(spin_net, tmp_path):
  path = tmp_path / "model_checkpoint.pt"
  torch.save({"model": spin_net.state_dict(), "epoch": 3, "dataset_perm": [2, 0, 1]}, path)
  graphdef, params, rest = spin_files.spin_regressor(path)

  images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  pred = jax.jit(lambda p, r, x: nnx.merge(graphdef, p, r, copy=True)(normalize_images(x)))(
    params, rest, images
  )
  x = torch.from_numpy(np.array(normalize_images(images))).permute(0, 3, 1, 2)
  with torch.no_grad():
    rotmat, betas, cam = spin_net(x)
  assert float(betas.abs().max()) > 0.1  # the outputs are not degenerate
  np.testing.assert_allclose(pred.rotmat, rotmat.numpy(), atol=1e-4)
  np.testing.assert_allclose(pred.betas, betas.numpy(), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(pred.cam, cam.numpy(), atol=1e-4, rtol=1e-4)


def test_bad_spin_checkpoint_lists_every_bad_key(spin_net, tmp_path):
  # One stored number per tensor (expanded views): the file is small, the shapes are real.
  sd = {k: torch.zeros(()).expand(v.shape) for k, v in spin_net.state_dict().items()}
  del sd["fc1.bias"], sd["layer3.2.bn1.running_var"]
  sd["fc.weight"] = torch.zeros(()).expand(1000, 2048)
  sd["decpose.weight"] = torch.zeros(()).expand(72, 1024)
  path = tmp_path / "bad.pt"
  torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}}, path)
  with pytest.raises(ValueError) as err:
    spin_files.load_spin_checkpoint(path, *_abstract_state())
  msg = str(err.value)
  assert "missing (2)" in msg and "fc1.bias [1024]" in msg
  assert "layer3.2.bn1.running_var [256]" in msg
  assert "unexpected (1)" in msg and "fc.weight [1000, 2048]" in msg
  assert "wrong shape (1)" in msg and "decpose.weight is [72, 1024], expected [144, 1024]" in msg
  assert "num_batches_tracked" not in msg  # BatchNorm's counters are not parameters


def test_not_a_spin_checkpoint(tmp_path):
  (tmp_path / "text.pt").write_bytes(b"certainly not a pickle")
  with open(tmp_path / "zip.pt", "wb") as fh:  # a zip archive, as torch's own files are
    np.savez(fh, a=np.zeros(3))
  for name in ("text.pt", "zip.pt"):
    with pytest.raises(ValueError, match=f"{name} is not a PyTorch file torch can read"):
      spin_files.read_spin_state_dict(tmp_path / name)
  torch.save({"model": {"fc1.bias": torch.zeros(2)}, "perm": np.arange(3)}, tmp_path / "np.pt")
  with pytest.raises(ValueError, match=r"weights_only=True\) refused it: .*numpy.* If you trust"):
    spin_files.read_spin_state_dict(tmp_path / "np.pt")
  torch.save({"epoch": 1, "weights": [1, 2]}, tmp_path / "other.pt")
  with pytest.raises(ValueError, match=r"not SPIN's checkpoint: .* found \['epoch', 'weights'\]"):
    spin_files.read_spin_state_dict(tmp_path / "other.pt")
  with pytest.raises(FileNotFoundError, match="missing.pt not found"):
    spin_files.read_spin_state_dict(tmp_path / "missing.pt")


def test_spin_checkpoint_without_torch_says_what_to_do(tmp_path, monkeypatch):
  (tmp_path / "model_checkpoint.pt").write_bytes(b"PK\x03\x04")
  monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch fails
  with pytest.raises(ImportError, match=r"reading it needs torch \(`pip install torch`"):
    spin_files.read_spin_state_dict(tmp_path / "model_checkpoint.pt")


def test_eval_and_demo_take_spin_checkpoint_option(tmp_path):
  from PIL import Image

  from spin_jax import demo
  from spin_jax import eval as eval_lib

  bad = tmp_path / "model_checkpoint.pt"
  bad.write_bytes(b"not torch")
  common = ["--spin_checkpoint", str(bad), "--body_model", "SMPL_NEUTRAL.pkl"]
  with pytest.raises(ValueError, match="model_checkpoint.pt is not a PyTorch file"):
    eval_lib.main([*common, "--dataset", "spin_synthetic/x"])
  with pytest.raises(ValueError, match="--spin_checkpoint needs --body_model"):
    eval_lib.main(common[:2] + ["--dataset", "spin_synthetic/x"])
  Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
  photo = ["--img", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out")]
  with pytest.raises(SystemExit, match="model_checkpoint.pt is not a PyTorch file"):
    demo.main([*photo, *common])
  with pytest.raises(SystemExit, match="exclude each other"):
    demo.main([*photo, *common, "--no_network"])


# -- fits -----------------------------------------------------------------------------------------


def _fitter_npz(path, pose, betas):
  n = len(pose)
  write_npz_atomic(
    path,
    pose=pose,
    betas=betas,
    cam_t=np.zeros((n, 3)),
    loss=np.zeros(n),
    joint_error_px=np.zeros((n, 49)),
    success=np.ones(n, bool),
    reason=np.array([""] * n),
    source=np.array(["x.npz"] * n),
    index=np.arange(n),
  )


def test_spin_fits_npy_gives_the_fitter_npz_table(tmp_path, capsys):
  layout = fits_lib.Layout(((3, 4), (20, 6)))
  rng = np.random.default_rng(0)
  pose = rng.normal(size=(6, 72)).astype(np.float32)
  betas = rng.normal(size=(6, 10)).astype(np.float32)
  _fitter_npz(tmp_path / "fits.npz", pose, betas)
  np.save(tmp_path / "mpii_fits.npy", np.concatenate([pose, betas], 1).astype(np.float64))
  mean = rng.normal(size=72)
  made_from = {20: ("mpii/train", [])}
  want = fits_lib.init_table(layout, mean, {20: str(tmp_path / "fits.npz")}, made_from)
  got = spin_files.init_table(layout, mean, {20: str(tmp_path / "mpii_fits.npy")}, made_from)
  assert "cannot check that fits file" in capsys.readouterr().out
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)
  # Both kinds in one table: each dataset's rows from its own file, the rest untouched.
  np.save(tmp_path / "h36m_fits.npy", np.concatenate([pose[:4], betas[:4]], 1))
  files = {3: str(tmp_path / "h36m_fits.npy"), 20: str(tmp_path / "fits.npz")}
  both = spin_files.init_table(layout, mean, files, made_from)
  np.testing.assert_array_equal(both.pose[:4], pose[:4])
  np.testing.assert_array_equal(both.betas[:4], betas[:4])
  np.testing.assert_array_equal(both.pose[4:], want.pose[4:])


def test_spin_fits_npy_of_wrong_shape_or_nonfinite_is_refused(tmp_path):
  layout = fits_lib.Layout(((20, 6),))
  made_from = {20: ("mpii/train", [])}

  def table(arr):
    np.save(tmp_path / "f.npy", arr)
    return spin_files.init_table(layout, np.zeros(72), {20: str(tmp_path / "f.npy")}, made_from)

  with pytest.raises(ValueError, match=r"has 5 rows but mpii/train has 6"):
    table(np.zeros((5, 82)))
  with pytest.raises(
    ValueError,
    match=re.escape("mpii/train: SPIN's fits are (6, 82)") + ".*" + re.escape("got shape (6, 85)"),
  ):
    table(np.zeros((6, 85)))
  arr = np.zeros((6, 82))
  arr[[1, 4], 3] = np.nan
  arr[4, 80] = np.inf
  with pytest.raises(
    ValueError, match=r"mpii/train: 2 of 6 rows are not finite \(first rows \[1, 4\]"
  ):
    table(arr)


def test_training_from_spin_checkpoint_needs_resnet50(tmp_path):
  import optax

  from spin_jax import train
  from spin_jax.config import ModelOptions, TrainConfig

  cfg = TrainConfig(model=ModelOptions(backbone="small", pretrained_checkpoint="spin.pt"))
  with pytest.raises(ValueError, match="SPIN's ResNet-50 network; model.backbone is 'small'"):
    train.create_state(cfg, fits_lib.Layout(((20, 6),)), optax.adam(1e-3))
