"""The trainer: regressor, fits dictionary, train step, checkpoints and resume, many devices."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import smpl_jax
from fitting import priors, smplify
from fitting.smplify import FitParams
from smpl_jax import augment, rotations
from smpl_jax.files import write_npz_atomic
from spin_jax import config as spin_config
from spin_jax import fits as fits_lib
from spin_jax import model as model_lib
from spin_jax import train, weights
from spin_jax import train_step as ts

ROOT = Path(__file__).resolve().parents[1]


def as_numpy(x):
  """Any state leaf (PRNG keys included) as a numpy array."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x)


def tiny_config(data_dir, workdir, **over) -> spin_config.TrainConfig:
  cd = spin_config.default_config_dict()
  cd.workdir = str(workdir)
  cd.body_model = str(smpl_jax.open_model_path("low"))
  cd.batch_size = 4
  cd.lr = 1e-3
  cd.steps = 4
  cd.log_every = cd.eval_every = cd.checkpoint_every = cd.image_every = 2
  cd.model.backbone = "small"
  cd.model.img_res = 64
  cd.fit.num_iters = 3
  cd.data.data_dir = str(data_dir)
  cd.data.train = ("spin_synthetic/tiny",)
  cd.data.val = "spin_synthetic/tiny"
  cd.data.val_examples = 4
  cd.data.num_threads = 1
  for k, v in over.items():
    node = cd
    *path, leaf = k.split(".")
    for p in path:
      node = node[p]
    node[leaf] = v
  return spin_config.from_config_dict(cd)


@pytest.fixture(scope="module")
def data_dir(tiny_train_data):
  return tiny_train_data


def test_config_rejects_unknown_keys():
  cd = spin_config.default_config_dict()
  cd.fit.num_iter = 5  # typo
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_iter'\] in fit"):
    spin_config.from_config_dict(cd)


def test_regressor_starts_at_the_mean():
  mp = model_lib.open_mean_params(num_samples=500)
  m = model_lib.Regressor(mp, "small", rngs=nnx.Rngs(0))
  m.eval()
  pred = m(jnp.zeros((2, 64, 64, 3)))
  assert pred.rotmat.shape == (2, 24, 3, 3)
  mean_rot = rotations.rot6d_to_rotmat(jnp.asarray(mp.pose6d).reshape(24, 6))
  # Output layers start at 1 % of Xavier: three small residual steps from the mean.
  np.testing.assert_allclose(pred.rotmat[0], mean_rot, atol=0.1)
  np.testing.assert_allclose(pred.cam[0], mp.cam, atol=0.1)
  r = np.asarray(pred.rotmat)
  np.testing.assert_allclose(
    r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
  )


def test_fits_gather_scatter_undo_the_augmentation():
  rng = np.random.default_rng(0)
  layout = fits_lib.Layout(((3, 5), (20, 7)))
  table = fits_lib.init_table(layout, np.zeros(72))
  ds = jnp.array([20, 3, 20])
  idx = jnp.array([6, 0, 2])
  rot = jnp.array([30.0, -45.0, 0.0])
  flip = jnp.array([True, False, True])
  pose = jnp.asarray(rng.normal(scale=0.3, size=(3, 72)), jnp.float32)
  betas = jnp.asarray(rng.normal(size=(3, 10)), jnp.float32)
  update = jnp.array([True, True, False])
  new = fits_lib.scatter(table, ds, idx, rot, flip, update, pose, betas)
  # Stored canonically: un-rotated, un-flipped.
  row = layout.rows(20).start + 6
  canon = augment.flip_pose(pose[0])
  canon = canon.at[:3].set(augment.rotate_global_orient(canon[:3], -30.0))
  np.testing.assert_allclose(new.pose[row], canon, atol=1e-5)
  # Gathering with the same augmentation gives the fit back (as rotations).
  got_pose, got_betas = fits_lib.gather(new, ds, idx, rot, flip)
  r = lambda p: rotations.aa_to_rotmat(p.reshape(-1, 24, 3))  # noqa: E731
  np.testing.assert_allclose(r(got_pose[:2]), r(pose[:2]), atol=1e-5)
  np.testing.assert_allclose(got_betas[:2], betas[:2])
  # A row whose update is False is untouched.
  np.testing.assert_array_equal(new.pose[layout.rows(20).start + 2], table.pose[0])
  changed = np.flatnonzero(np.any(np.asarray(new.pose != table.pose), axis=1))
  assert sorted(changed.tolist()) == sorted([row, layout.rows(3).start])


def test_fits_file_that_does_not_match_is_refused(tmp_path):
  layout = fits_lib.Layout(((20, 6),))
  good = dict(
    pose=np.zeros((6, 72), np.float32),
    betas=np.ones((6, 10), np.float32),
    cam_t=np.zeros((6, 3)),
    loss=np.zeros(6),
    joint_error_px=np.zeros((6, 49)),
    success=np.ones(6, bool),
    reason=np.array([""] * 6),
    source=np.array(["x"] * 6),
    index=np.arange(6),
  )
  write_npz_atomic(tmp_path / "ok.npz", **good)
  t = fits_lib.init_table(layout, np.zeros(72), {20: str(tmp_path / "ok.npz")})
  assert float(t.betas.sum()) == 60.0
  write_npz_atomic(tmp_path / "short.npz", **{k: v[:5] for k, v in good.items()})
  with pytest.raises(ValueError, match=r"short.npz has 5 rows .* dataset id 20 has 6"):
    fits_lib.init_table(layout, np.zeros(72), {20: str(tmp_path / "short.npz")})
  write_npz_atomic(tmp_path / "other.npz", **good, dataset_id=np.full(6, 3))
  with pytest.raises(ValueError, match=r"holds dataset ids \[3\], not 20"):
    fits_lib.init_table(layout, np.zeros(72), {20: str(tmp_path / "other.npz")})


def _step_setup(data_dir, tmp_path, **over):
  cfg = tiny_config(data_dir, tmp_path, **over)
  body = smpl_jax.load_model(cfg.body_model)
  prior = priors.load_gmm()
  layout = train.layout_of(cfg)
  tx = optax.adam(cfg.lr)
  graphdef, _, state, _ = train.create_state(cfg, layout, tx)
  batch = next(
    train.pipeline.make_iterator(train.data_options(cfg), process_index=0, process_count=1)
  )
  return cfg, body, prior, tx, graphdef, state, batch


def test_step_updates_only_better_fits_and_never_writes_nan(data_dir, tmp_path):
  cfg, body, prior, tx, graphdef, state, batch = _step_setup(data_dir, tmp_path)
  step = jax.jit(lambda s, b: ts.train_step(s, b, body, prior, graphdef=graphdef, tx=tx, cfg=cfg))
  new, metrics = step(state, batch)
  assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
  opts = ts.smplify_options(cfg)
  kp_px = ts.keypoints_px(jnp.asarray(batch["keypoints"]))
  rows = (batch["dataset_id"], batch["index"], batch["rot_deg"], batch["is_flipped"])
  before, _ = ts.score_fits(body, prior, kp_px, *fits_lib.gather(state.fits, *rows), opts)
  after, _ = ts.score_fits(body, prior, kp_px, *fits_lib.gather(new.fits, *rows), opts)
  assert np.all(np.asarray(after) <= np.asarray(before) + 1e-3)  # never worse
  assert float(metrics["fits/update_rate"]) > 0  # fits from the mean pose improve at once
  # A batch with a NaN keypoint: the step reports it and changes nothing.
  bad = dict(
    batch, keypoints=np.where(np.arange(49)[None, :, None] == 30, np.nan, batch["keypoints"])
  )
  same, metrics = step(new, bad)
  assert not bool(metrics["finite"])
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(new)):
    np.testing.assert_array_equal(as_numpy(a), as_numpy(b))


def test_hmr_mode_supervises_pose_only_where_ground_truth_is(data_dir, tmp_path):
  # Without fitting the table holds the mean pose: it must not pull the network towards it.
  cfg, body, prior, tx, graphdef, state, batch = _step_setup(
    data_dir, tmp_path, batch_size=8, **{"fit.run": False, "fit.threshold": 1e12}
  )
  assert 0 < batch["has_smpl"].sum() < 8  # the tiny set is half 2D-only
  step = jax.jit(lambda s, b: ts.train_step(s, b, body, prior, graphdef=graphdef, tx=tx, cfg=cfg))
  _, metrics = step(state, batch)
  assert float(metrics["fits/valid_rate"]) == pytest.approx(batch["has_smpl"].mean())
  assert float(metrics["fits/update_rate"]) == 0.0


def test_nonfinite_loss_stops_training_with_step_and_ids(data_dir, tmp_path, monkeypatch):
  cfg = tiny_config(data_dir, tmp_path / "w", **{"loss.scale": float("nan")})
  with pytest.raises(train.NonFiniteLoss, match=r"at step 1 .*dataset_id, index\): \[\(20, "):
    train.run(cfg)


def _final_state(workdir):
  d = Path(workdir) / "checkpoints"
  import orbax.checkpoint as ocp

  mngr = ocp.CheckpointManager(d.absolute(), options=ocp.CheckpointManagerOptions(read_only=True))
  step = mngr.latest_step()
  got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, got["state"]


def test_resume_continues_as_if_never_stopped(data_dir, tmp_path):
  """A run stopped after its step-2 checkpoint and started again ends where an uninterrupted
  run ends: same batches after the restart, same fits, same parameters."""
  train.run(tiny_config(data_dir, tmp_path / "a", steps=4))
  train.run(tiny_config(data_dir, tmp_path / "b", steps=2))
  train.run(tiny_config(data_dir, tmp_path / "b", steps=4))
  sa, a = _final_state(tmp_path / "a")
  sb, b = _final_state(tmp_path / "b")
  assert sa == sb == 4
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = dict(jax.tree_util.tree_leaves_with_path(b))
  for path, x in leaves_a:
    np.testing.assert_array_equal(as_numpy(leaves_b[path]), as_numpy(x), err_msg=str(path))


def test_corrupt_checkpoint_is_named_or_skipped(data_dir, tmp_path):
  cfg = tiny_config(data_dir, tmp_path / "c", steps=4)
  train.run(cfg)
  latest = tmp_path / "c" / "checkpoints" / "4" / "state"
  for f in latest.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  cfg6 = tiny_config(data_dir, tmp_path / "c", steps=6)
  with pytest.raises(RuntimeError, match=r"checkpoints/4 cannot be restored.*--restore_fallback"):
    train.run(cfg6)
  out = train.run(cfg6, restore_fallback=True)
  assert out["step"] == 6
  # The damaged step is kept aside, named, and replaced: training redid it and saved it again
  # (orbax refuses steps <= its newest, so it must be out of the way), and the run evaluates.
  assert (tmp_path / "c" / "checkpoints_damaged" / "4" / "state").is_dir()
  step, state = _final_state(tmp_path / "c")
  assert step == 6
  from spin_jax import eval as eval_lib

  *_, redone = eval_lib.load_checkpoint(tmp_path / "c", 4)  # the redone step 4 reads
  assert redone == 4


def test_kill_9_then_same_command_resumes(data_dir, tmp_path):
  cfg_file = tmp_path / "cfg.py"
  cfg_file.write_text(
    textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(ROOT / "tests")!r})
    from test_train import tiny_config
    import dataclasses, ml_collections
    def get_config():
      cfg = tiny_config({str(data_dir)!r}, {str(tmp_path / "k")!r}, steps=400,
                        checkpoint_every=2, eval_every=1000, image_every=1000)
      return ml_collections.ConfigDict(dataclasses.asdict(cfg))
    """)
  )
  cmd = [sys.executable, "-m", "spin_jax.train", f"--config={cfg_file}"]
  env = dict(  # the tests' compilation cache: the second process need not compile again
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  ckpt = tmp_path / "k" / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline and not any(
    p.name.isdigit() and int(p.name) >= 4 for p in ckpt.glob("*")
  ):
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(int(p.name) for p in ckpt.glob("*") if p.name.isdigit())
  assert killed_at >= 4
  out = subprocess.run(
    cmd + [f"--config.steps={killed_at + 2}"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "resumed from" in out.stdout
  result = json.loads((tmp_path / "k" / "result.json").read_text())
  assert result["step"] == killed_at + 2


def _torchvision_layout(spec: model_lib.BackboneSpec, rng) -> dict:
  """A random state dict with torchvision's ResNet names and shapes."""
  sd = {}

  def conv(name, cout, cin, k):
    sd[f"{name}.weight"] = rng.normal(size=(cout, cin, k, k)).astype(np.float32) * 0.1

  def bn(name, n):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(size=n).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(size=n).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", spec.width, 3, 7)
  bn("bn1", spec.width)
  cin = spec.width
  exp = 4 if spec.block == "bottleneck" else 1
  for i, n in enumerate(spec.stages):
    planes = spec.width * 2**i
    for j in range(n):
      p = f"layer{i + 1}.{j}"
      stride = 2 if (i > 0 and j == 0) else 1
      if spec.block == "bottleneck":
        conv(f"{p}.conv1", planes, cin, 1), bn(f"{p}.bn1", planes)
        conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
        conv(f"{p}.conv3", planes * exp, planes, 1), bn(f"{p}.bn3", planes * exp)
      else:
        conv(f"{p}.conv1", planes, cin, 3), bn(f"{p}.bn1", planes)
        conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
      if stride != 1 or cin != planes * exp:
        conv(f"{p}.downsample.0", planes * exp, cin, 1), bn(f"{p}.downsample.1", planes * exp)
      cin = planes * exp
  sd["fc.weight"] = np.zeros((1000, cin), np.float32)
  sd["fc.bias"] = np.zeros(1000, np.float32)
  return sd


def test_torchvision_weights_load(tmp_path):
  from safetensors.numpy import save_file

  spec = model_lib.BackboneSpec("bottleneck", (1, 1, 1, 1), 8)  # ResNet-50's blocks, small
  sd = _torchvision_layout(spec, np.random.default_rng(0))
  save_file(sd, str(tmp_path / "r.safetensors"))
  m = model_lib.Regressor(model_lib.open_mean_params(500), spec, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  params, rest = weights.load_torchvision_resnet(tmp_path / "r.safetensors", params, rest)
  m = nnx.merge(graphdef, params, rest)
  np.testing.assert_array_equal(
    m.backbone.layer2[0].downsample[1].mean[...], sd["layer2.0.downsample.1.running_mean"]
  )
  np.testing.assert_array_equal(m.backbone.layer3[0].bn2.scale[...], sd["layer3.0.bn2.weight"])
  # The stem convolution computes what torch's conv2d computes with the file's weight.
  x = np.random.default_rng(1).normal(size=(1, 3, 20, 20)).astype(np.float32)
  ours = np.asarray(m.backbone.conv1(jnp.asarray(x.transpose(0, 2, 3, 1))))
  torch = pytest.importorskip("torch")
  ref = torch.nn.functional.conv2d(
    torch.from_numpy(x), torch.from_numpy(sd["conv1.weight"]), stride=2, padding=3
  )
  np.testing.assert_allclose(ours, ref.numpy().transpose(0, 2, 3, 1), atol=1e-4)
  # A file for another network is refused with what is missing.
  del sd["layer4.0.conv2.weight"]
  save_file(sd, str(tmp_path / "bad.safetensors"))
  with pytest.raises(
    ValueError, match=r"lacks 1 backbone tensors, e.g. \['backbone.layer4.0.conv2.kernel'\]"
  ):
    weights.load_torchvision_resnet(tmp_path / "bad.safetensors", params, rest)


def test_fitting_only_rows_without_ground_truth_equals_fitting_them_all(lowres_model):
  rng = np.random.default_rng(5)
  b = 8
  init = FitParams(
    jnp.asarray(rng.normal(scale=0.1, size=(b, 3)) + [np.pi, 0, 0], jnp.float32),
    jnp.asarray(rng.normal(scale=0.1, size=(b, 69)), jnp.float32),
    jnp.zeros((b, 10)),
    jnp.tile(jnp.asarray([0.0, 0.2, 40.0]), (b, 1)),
  )
  kp = jnp.asarray(rng.uniform(60, 160, (b, 49, 3)), jnp.float32).at[..., 2].set(1.0)
  prior = priors.load_gmm()
  opts = smplify.SmplifyOptions(num_iters=3)
  full = jax.jit(lambda k, i: smplify.fit_batch(lowres_model, prior, k, i, opts))(kp, init)
  fit = jax.jit(lambda k, i, n: ts.fit_where_needed(lowres_model, prior, k, i, n, opts, chunks=4))
  for need in ([1, 0, 1, 1, 0, 1, 1, 0], [0] * 8, [1] * 8, [0, 0, 0, 0, 0, 0, 0, 1]):
    need = np.asarray(need, bool)
    params, success, fitted = fit(kp, init, need)
    np.testing.assert_array_equal(np.asarray(fitted), need)
    np.testing.assert_array_equal(np.asarray(success), np.asarray(full.success) & need)
    for got, want, start in zip(
      jax.tree.leaves(params), jax.tree.leaves(full.params), jax.tree.leaves(init)
    ):
      np.testing.assert_allclose(np.asarray(got)[need], np.asarray(want)[need], atol=1e-5)
      np.testing.assert_array_equal(np.asarray(got)[~need], np.asarray(start)[~need])


def test_skip_nonfinite_counts_and_skips_bad_batches(data_dir, tmp_path):
  cfg = tiny_config(data_dir, tmp_path / "w", skip_nonfinite=True, **{"loss.scale": float("nan")})
  result = train.run(cfg)
  assert result["nonfinite_skipped"] == [1, 2, 3, 4]  # every batch, none stopped the run
  saved_at, state = _final_state(tmp_path / "w")
  assert saved_at == 4 and int(np.asarray(state["step"])) == 0  # skipped steps change nothing
