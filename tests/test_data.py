"""The data issue: TFDS builders, SPIN's augmentation, the grain pipeline, bad input."""

import dataclasses
import io

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image, ImageDraw

import smpl_jax
from smpl_jax import augment
from smpl_jax.joints import J24_FLIP_PERM, J24_PELVIS, SPIN49_FLIP_PERM
from spin_jax.data import build, builders, geometry, pipeline, records, spin_format, synthetic

DOT_ROW = 25  # SPIN49 row of J24 "Right Ankle", drawn as a white dot in every test image
N_SPIN = 6


def _write_spin_dataset(root, n=N_SPIN, seed=0):
  """A SPIN-format h36m file and its JPEGs: black images with one white dot per image at
  the Right Ankle keypoint, the other keypoints random, 3D labels random."""
  rng = np.random.default_rng(seed)
  (root / "dataset_extras").mkdir(parents=True)
  (root / "h36m" / "images").mkdir(parents=True)
  names, centers, part = [], [], np.zeros((n, 24, 3), np.float32)
  for i in range(n):
    w, h = 240, 200
    img = Image.new("RGB", (w, h), (0, 0, 0))
    c = np.array([120 + rng.uniform(-10, 10), 100 + rng.uniform(-10, 10)])
    dot = np.round(c + rng.uniform(-45, 45, 2)).astype(int)  # pixel index of the dot
    ImageDraw.Draw(img).rectangle([dot[0] - 1, dot[1] - 1, dot[0] + 1, dot[1] + 1], fill="white")
    name = f"images/S1_walk.{i}_{i:06d}.jpg"
    img.save(root / "h36m" / name, quality=98)
    names.append(name)
    centers.append(c)
    part[i, :, :2] = c + rng.uniform(-60, 60, (24, 2))
    part[i, :, 2] = 1
    part[i, 0, :2] = dot
  np.savez(
    root / "dataset_extras" / "h36m_train.npz",
    imgname=np.array(names),
    center=np.array(centers, np.float32),
    scale=np.full(n, 0.8, np.float32),
    part=part,
    openpose=np.zeros((n, 25, 3), np.float32),
    S=np.concatenate([rng.normal(size=(n, 24, 3)), np.ones((n, 24, 1))], 2).astype(np.float32),
    pose=rng.normal(scale=0.3, size=(n, 72)).astype(np.float32),
    shape=rng.normal(size=(n, 10)).astype(np.float32),
  )
  return part


@pytest.fixture(scope="module")
def spin_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("spin_manual")
  part = _write_spin_dataset(root)
  data_dir = tmp_path_factory.mktemp("tfds")
  build.main(
    ["spin", "--data_dir", str(data_dir), "--manual_dir", str(root), "--datasets", "h36m"]
  )
  return data_dir, part


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds_syn")
  build.main(
    ["synthetic", "--data_dir", str(data_dir), "--name", "tiny", "--num_train", "24"]
    + ["--num_validation", "4", "--num_test", "4", "--workers", "1", "--model", _low_path()]
  )
  return data_dir


def _low_path():
  return str(smpl_jax.open_model_path("low"))


def _records_by_index(src):
  return {int(src[i]["index"]): src[i] for i in range(len(src))}


def test_spin_build_reads_back(spin_data):
  data_dir, part = spin_data
  src = builders.open_source(data_dir, "spin_format/h36m", "train")
  assert len(src) == N_SPIN
  recs = _records_by_index(src)
  assert sorted(recs) == list(range(N_SPIN))  # explicit index despite TFDS's shuffled storage
  for ex in recs.values():
    assert ex["dataset_id"] == records.dataset_info("h36m").dataset_id
    assert ex["has_3d"] and ex["has_smpl"] and not ex["has_cam"]
    img = np.asarray(pipeline.decode_image(ex["image"]))
    assert img.shape == (336, 336, 3)
    # The dot lies where the stored keypoint says (continuous pixel coordinates).
    x, y = ex["keypoints"][DOT_ROW, :2]
    assert img[int(y), int(x)].mean() > 100


def _dot_centroid(img: np.ndarray) -> np.ndarray:
  v = img.astype(np.float64).mean(axis=2)
  v = np.where(v > 0.3 * v.max(), v, 0.0)
  ys, xs = np.nonzero(v)
  w = v[ys, xs]
  return np.array([np.sum(w * (xs + 0.5)), np.sum(w * (ys + 0.5))]) / w.sum()


@pytest.mark.parametrize(
  "aug",
  [
    geometry.AugmentParams(),
    geometry.AugmentParams(flip=True),
    geometry.AugmentParams(rot_deg=30.0, scale=1.2),
    geometry.AugmentParams(flip=True, rot_deg=-50.0, scale=0.8),
  ],
  ids=["none", "flip", "rot_scale", "all"],
)
def test_dot_lands_on_its_keypoint(spin_data, aug):
  """A dot drawn at a keypoint in the source image is found at the transformed keypoint
  after crop, rotation, scale and flip (the flipped image has it in the mirrored row)."""
  data_dir, _ = spin_data
  src = builders.open_source(data_dir, "spin_format/h36m", "train")
  opts = pipeline.DataOptions(data_dir=str(data_dir), datasets=("spin_format/h36m",))
  for i in range(len(src)):
    out = pipeline.process(src[i], aug, opts)
    row = SPIN49_FLIP_PERM.index(DOT_ROW) if aug.flip else DOT_ROW
    expected = (out["keypoints"][row, :2] + 1.0) * opts.img_res / 2.0
    np.testing.assert_allclose(_dot_centroid(out["image"]), expected, atol=0.5)


def test_flip_twice_is_identity():
  rng = np.random.default_rng(0)
  pose = rng.normal(size=72)
  np.testing.assert_allclose(geometry.flip_pose(geometry.flip_pose(pose)), pose)
  joints = rng.normal(size=(24, 4))
  flip = geometry.AugmentParams(flip=True)
  twice = geometry.augment_joints3d(geometry.augment_joints3d(joints, flip), flip)
  np.testing.assert_allclose(twice, joints, atol=1e-6)
  a = geometry.crop_affine((50.0, 60.0), 100.0, 224, flip=True)
  pts = rng.uniform(0, 200, (10, 2))
  once = geometry.apply_affine(a, pts)
  back = geometry.apply_affine(geometry.crop_affine((112.0, 112.0), 224.0, 224, flip=True), once)
  np.testing.assert_allclose(
    back, geometry.apply_affine(geometry.crop_affine((50.0, 60.0), 100.0, 224), pts)
  )
  perm = np.asarray(SPIN49_FLIP_PERM)
  np.testing.assert_array_equal(perm[perm], np.arange(49))
  perm = np.asarray(J24_FLIP_PERM)
  np.testing.assert_array_equal(perm[perm], np.arange(24))


def test_numpy_augmentation_matches_jax():
  rng = np.random.default_rng(1)
  pose = rng.normal(size=(5, 72)).astype(np.float32)
  pose[0, :3] = [np.pi - 1e-3, 0, 0]  # near the half turn
  for p in pose:
    for rot in (0.0, 25.0, -170.0):
      got = geometry.rotate_global_orient(p[:3], rot)
      want = np.asarray(augment.rotate_global_orient(jnp.asarray(p[:3]), rot))
      r_got = np.asarray(smpl_jax.rotations.aa_to_rotmat(jnp.asarray(got, jnp.float32)))
      r_want = np.asarray(smpl_jax.rotations.aa_to_rotmat(jnp.asarray(want)))
      np.testing.assert_allclose(r_got, r_want, atol=2e-5)
    np.testing.assert_allclose(
      geometry.flip_pose(p), np.asarray(augment.flip_pose(jnp.asarray(p)))
    )


def test_augmented_labels_project_to_augmented_keypoints(synthetic_data, lowres_model):
  """Posing the body with the augmented pose and projecting it (with the camera that the
  crop implies) gives the augmented keypoints; the augmented 3D joints are the posed ones."""
  src = builders.open_source(synthetic_data, "spin_synthetic/tiny", "test")
  opts = pipeline.DataOptions(data_dir=str(synthetic_data), datasets=("spin_synthetic/tiny",))
  fwd = jax.jit(smpl_jax.forward_joints)
  for k, aug in enumerate(
    [geometry.AugmentParams(), geometry.AugmentParams(flip=True, rot_deg=35.0, scale=1.15)]
    + [geometry.AugmentParams(rot_deg=-60.0, scale=0.8), geometry.AugmentParams(flip=True)]
  ):
    ex = src[k]
    out = pipeline.process(ex, aug, opts)
    posed = fwd(lowres_model, ex["betas"], out["pose"][:3], out["pose"][3:])
    j49 = np.asarray(posed.joint_sets["spin49"], np.float64)
    root = np.asarray(fwd(lowres_model, ex["betas"], np.zeros(3), ex["pose"][3:]).joints[0])
    # The global orientation turns the body about its root joint: carry the translation along.
    a = np.deg2rad(-aug.rot_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    t = rz @ (root + ex["cam_t"]) - root
    if aug.flip:  # the flipped pose poses the mirror image (x -> -x) of the body
      t[0] = -t[0]
    cam = j49 + t
    focal = smpl_jax.camera.FOCAL_LENGTH / aug.scale  # the crop zooms by 1 / scale
    xy = focal * cam[:, :2] / cam[:, 2:3]
    gt = out["keypoints"][25:]
    vis = gt[:, 2] > 0
    assert vis.sum() > 15
    np.testing.assert_allclose(gt[vis, :2] * opts.img_res / 2, xy[25:][vis], atol=0.6)
    j24 = j49[25:] - j49[25 + J24_PELVIS]
    np.testing.assert_allclose(out["joints3d"][:, :3], j24, atol=2e-3)


def test_iterator_restores_same_next_batch(synthetic_data, tmp_path):
  opts = pipeline.DataOptions(
    data_dir=str(synthetic_data), datasets=("spin_synthetic/tiny",), batch_size=4, with_masks=True
  )
  it = pipeline.make_iterator(opts, process_index=0, process_count=1)
  for _ in range(7):  # past the end of an epoch (24 examples)
    next(it)
  mngr = ocp.CheckpointManager(tmp_path / "ckpt")
  mngr.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  want = next(it)
  it2 = pipeline.make_iterator(opts, process_index=0, process_count=1)
  mngr.restore(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
  got = next(it2)
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert want["part_mask"].max() > 0


def test_process_shards_partition_the_global_batch(synthetic_data):
  opts = pipeline.DataOptions(
    data_dir=str(synthetic_data), datasets=("spin_synthetic/tiny",), batch_size=8
  )
  whole = pipeline.make_dataset(opts, process_index=0, process_count=1)[0]
  parts = [pipeline.make_dataset(opts, process_index=p, process_count=2)[0] for p in range(2)]
  for key in whole:  # side by side, the processes' batches are the one-process batch, in order
    np.testing.assert_array_equal(parts[0][key], whole[key][:4], err_msg=key)
    np.testing.assert_array_equal(parts[1][key], whole[key][4:], err_msg=key)


def test_two_d_only_and_ignore_3d(synthetic_data):
  src = builders.open_source(synthetic_data, "spin_synthetic/tiny", "train")
  flags = np.array([bool(src[i]["has_smpl"]) for i in range(len(src))])
  assert 0 < flags.sum() < len(flags)  # half 2D-only by default
  for i in np.flatnonzero(~flags):
    assert not src[i]["has_3d"] and not np.any(src[i]["pose"])
  opts = pipeline.DataOptions(
    data_dir=str(synthetic_data), datasets=("spin_synthetic/tiny",), batch_size=8, ignore_3d=True
  )
  batch = pipeline.make_dataset(opts, process_index=0, process_count=1)[0]
  assert not batch["has_smpl"].any() and not batch["has_3d"].any()


def test_synthetic_examples_do_not_depend_on_chunking(lowres_model):
  r = synthetic.Renderer.create(lowres_model)
  opts = synthetic.SceneOptions(resolution=64)
  a = dict(synthetic.generate(r, opts, 3, "train", 0, 5, batch=4))
  b = dict(synthetic.generate(r, opts, 3, "train", 3, 5, batch=4))
  for i in (3, 4):
    assert a[i]["image"] == b[i]["image"]
    np.testing.assert_array_equal(a[i]["keypoints"], b[i]["keypoints"])


def test_spin_mixing_proportions():
  w = pipeline.spin_mixing(
    {"h36m": 300, "lsp-orig": 1000, "mpii": 3000, "lspet": 6000, "coco": 0, "mpi-inf-3dhp": 50}
  )
  assert w["h36m"] == pytest.approx(0.3) and w["mpi-inf-3dhp"] == pytest.approx(0.1)
  assert w["mpii"] == pytest.approx(0.6 * 0.3) and w["lspet"] == pytest.approx(0.6 * 0.6)
  partial = pipeline.spin_mixing({"h36m": 10, "mpii": 10})
  assert partial["h36m"] == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match="not one of SPIN"):
    pipeline.spin_mixing({"spin_synthetic": 5})


def test_mixed_stream_follows_weights(synthetic_data, spin_data):
  import shutil

  data_dir, _ = spin_data
  merged = synthetic_data.parent / "merged"
  if not merged.exists():
    shutil.copytree(synthetic_data, merged)
    shutil.copytree(data_dir / "spin_format", merged / "spin_format")
  opts = pipeline.DataOptions(
    data_dir=str(merged),
    datasets=("spin_synthetic/tiny", "spin_format/h36m"),
    weights=(0.75, 0.25),
    batch_size=40,
  )
  ids = pipeline.make_dataset(opts, process_index=0, process_count=1)[0]["dataset_id"]
  assert np.mean(ids == records.dataset_info("h36m").dataset_id) == pytest.approx(0.25, abs=0.05)


# -- bad input ------------------------------------------------------------------------------


def _spin_manual(tmp_path):
  root = tmp_path / "manual"
  _write_spin_dataset(root)
  return root


def _build(root, tmp_path, *extra):
  return build.main(
    ["spin", "--data_dir", str(tmp_path / "tfds"), "--manual_dir", str(root), "--datasets", "h36m"]
    + list(extra)
  )


def test_missing_image_names_dataset_and_row(tmp_path):
  root = _spin_manual(tmp_path)
  (root / "h36m" / "images" / "S1_walk.2_000002.jpg").unlink()
  with pytest.raises(spin_format.DataError, match=r"h36m row 2 .*not found"):
    _build(root, tmp_path)


def test_truncated_jpeg_is_an_error_or_a_counted_skip(tmp_path, capsys):
  root = _spin_manual(tmp_path)
  path = root / "h36m" / "images" / "S1_walk.3_000003.jpg"
  path.write_bytes(path.read_bytes()[:300])
  with pytest.raises(spin_format.DataError, match=r"h36m row 3 .*truncated"):
    _build(root, tmp_path)
  (out,) = _build(root, tmp_path, "--skip_bad")
  assert "1 skipped" in capsys.readouterr().out
  report = (out / "build_report.json").read_text()
  assert '"index": 3' in report
  src = builders.open_source(tmp_path / "tfds", "spin_format/h36m", "train")
  assert sorted(int(src[i]["index"]) for i in range(len(src))) == [0, 1, 2, 4, 5]


def test_npz_without_required_keys(tmp_path):
  root = _spin_manual(tmp_path)
  f = root / "dataset_extras" / "h36m_train.npz"
  with np.load(f) as z:
    data = {k: z[k] for k in z.files if k != "scale"}
  np.savez(f, **data)
  with pytest.raises(spin_format.DataError, match=r"h36m: .*lacks required key\(s\) \['scale'\]"):
    _build(root, tmp_path)


def test_box_outside_image(tmp_path):
  root = _spin_manual(tmp_path)
  f = root / "dataset_extras" / "h36m_train.npz"
  with np.load(f) as z:
    data = {k: z[k] for k in z.files}
  data["center"][4] = [2000.0, 100.0]
  np.savez(f, **data)
  with pytest.raises(spin_format.DataError, match=r"h36m row 4 .*outside the 240x200 image"):
    _build(root, tmp_path)


def test_missing_dataset_is_explained(tmp_path):
  with pytest.raises(FileNotFoundError, match="no prepared dataset"):
    builders.open_source(tmp_path, "spin_synthetic/nothing", "train")
  with pytest.raises(FileNotFoundError, match="h36m_train.npz"):
    _build(tmp_path / "empty", tmp_path)


def test_montage_writes_png(synthetic_data, tmp_path):
  from spin_jax.data import montage

  out = tmp_path / "m.png"
  montage.main(
    [
      "--data_dir",
      str(synthetic_data),
      "--dataset",
      "spin_synthetic/tiny",
      "--num",
      "4",
      "--out",
      str(out),
    ]
  )
  img = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
  assert img.shape == (224, 4 * 224, 3)


def test_activity_poses_are_within_joint_limits():
  from fitting import pose_sampler

  lim = pose_sampler.joint_limits().reshape(69, 2)
  rng = np.random.default_rng(0)
  for name in pose_sampler.ACTIVITIES:
    p = np.clip(pose_sampler.activity_pose(rng, name).reshape(69), lim[:, 0], lim[:, 1])
    assert np.all(np.isfinite(p)) and np.abs(p).max() > 0.3, name
  samples = np.stack([pose_sampler.sample_pose(rng, 0.25, (0.3, 0.8)) for _ in range(200)])
  assert np.all(samples >= lim[:, 0] - 1e-9) and np.all(samples <= lim[:, 1] + 1e-9)
  knee = samples[:, 3 * 3]  # left knee flexion (x of body joint 4 - 1)
  assert knee.max() > 1.2  # sitting and squatting bend knees well past the walk


def test_spin_build_with_workers_is_the_serial_build(tmp_path):
  """--workers 2 decodes in spawned processes, in chunks: the records (image bytes included)
  and their storage order are the serial build's, and so are the skipped rows and the report;
  without --skip_bad the bad row is the same error. (The record files are byte-identical too
  when built in one process; across processes protobuf may order a record's features map
  differently.)"""
  root = _spin_manual(tmp_path)
  path = root / "h36m" / "images" / "S1_walk.3_000003.jpg"
  path.write_bytes(path.read_bytes()[:300])
  (serial,) = _build(root, tmp_path / "w1", "--skip_bad")
  (parallel,) = _build(root, tmp_path / "w2", "--skip_bad", "--workers", "2")
  report = (serial / "build_report.json").read_text()
  assert report == (parallel / "build_report.json").read_text() and '"index": 3' in report
  want = builders.open_source(tmp_path / "w1" / "tfds", "spin_format/h36m", "train")
  got = builders.open_source(tmp_path / "w2" / "tfds", "spin_format/h36m", "train")
  assert len(got) == len(want) == N_SPIN - 1
  for i in range(len(want)):
    assert set(got[i]) == set(want[i])
    for key in want[i]:
      np.testing.assert_array_equal(got[i][key], want[i][key], err_msg=f"record {i} {key}")
  ann = spin_format.read_annotations(root / "dataset_extras" / "h36m_train.npz", "h36m")
  args = (ann, root / "h36m", records.dataset_info("h36m"), 1.5, 64)
  skipped = [], []
  serial = list(spin_format.iter_examples(*args, skip_bad=True, skipped=skipped[0]))
  chunked = spin_format.iter_examples(*args, True, skipped[1], workers=2, chunk=2)
  for (i, a), (j, b) in zip(serial, chunked, strict=True):  # chunks of 2 rows: 3 tasks
    assert i == j and a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=f"row {i} {key}")
  assert skipped[0] == skipped[1] and [i for i, _ in skipped[0]] == [3]
  with pytest.raises(spin_format.DataError, match=r"h36m row 3 .*truncated"):
    list(spin_format.iter_examples(*args, workers=2, chunk=2))


def _pattern_record(size=96, margin=1.5):
  """A stored record whose (lossless PNG) crop encodes its own coordinates: pixel (u, v) has
  red 2 (u + 0.5) and green 2 (v + 0.5), so each pixel of an augmented crop tells which
  stored-crop point it was sampled from (bilinear interpolation of a ramp is exact). Its
  keypoints are spread over the middle of the crop."""
  ramp = 2.0 * (np.arange(size) + 0.5)
  pixels = np.zeros((size, size, 3), np.uint8)
  pixels[..., 0], pixels[..., 1] = ramp[None, :], ramp[:, None]
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="PNG")
  kp = np.zeros((49, 3), np.float32)
  kp[:, :2] = np.random.default_rng(0).uniform(0.35 * size, 0.65 * size, (49, 2))
  kp[:, 2] = 1.0
  ex = records.empty_labels()
  ex.update(image=buf.getvalue(), keypoints=kp, margin=np.float32(margin))
  ex.update(dataset_id=np.int32(0), index=np.int64(0))
  return ex


@pytest.mark.parametrize(
  "aug",
  [
    geometry.AugmentParams(),
    geometry.AugmentParams(flip=True, rot_deg=25.0, scale=1.2),
    geometry.AugmentParams(rot_deg=-40.0, scale=0.8),
  ],
  ids=["none", "flip_rot_zoom_out", "rot_zoom_in"],
)
def test_augmented_crop_is_one_resample_of_the_stored_crop(aug, monkeypatch):
  """Crop, scale, rotation and flip are one affine and one resample (one `warp` call): every
  output pixel holds the stored-crop point that the affine's inverse gives, and the pixel under
  each augmented keypoint is the stored keypoint's (in the mirrored row when flipped)."""
  ex, res = _pattern_record(), 64
  opts = pipeline.DataOptions(data_dir="", datasets=("x",), img_res=res)
  calls = []
  warp = geometry.warp
  monkeypatch.setattr(geometry, "warp", lambda *a, **k: calls.append(a) or warp(*a, **k))
  out = pipeline.process(ex, aug, opts)
  assert len(calls) == 1 and calls[0][0].size == (96, 96)  # from the stored crop, once
  affine = calls[0][1]
  np.testing.assert_allclose(  # the affine: crop of side scale * 64 around the centre, etc.
    affine, geometry.crop_affine((48.0, 48.0), aug.scale * 64.0, res, aug.rot_deg, aug.flip)
  )
  centres = np.stack(np.meshgrid(np.arange(res), np.arange(res)), -1) + 0.5
  inv = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]
  source = geometry.apply_affine(inv, centres)  # (res, res, 2) stored-crop points
  inside = np.all((source > 1.0) & (source < 95.0), axis=-1)
  assert inside.mean() > 0.5
  got = out["image"][..., :2].astype(np.float64) / 2.0
  np.testing.assert_allclose(got[inside], source[inside], atol=0.5)
  if aug.rot_deg:  # content turns counter-clockwise (on screen, y down) for rot > 0: the top
    # row of the output comes from a source line that descends to the right (mirrored if flip)
    assert (source[0, -1, 1] > source[0, 0, 1]) == ((aug.rot_deg > 0) != aug.flip)
  rows = np.asarray(SPIN49_FLIP_PERM) if aug.flip else np.arange(49)
  xy = (out["keypoints"][:, :2] + 1.0) * res / 2.0 - 0.5  # pixel-index coordinates
  i, f = np.floor(xy).astype(int), xy - np.floor(xy)
  img = out["image"][..., :2].astype(np.float64) / 2.0
  under = sum(  # the image under each keypoint, interpolated bilinearly
    img[i[:, 1] + dy, i[:, 0] + dx]
    * (f[:, :1] if dx else 1 - f[:, :1])
    * (f[:, 1:] if dy else 1 - f[:, 1:])
    for dx in (0, 1)
    for dy in (0, 1)
  )
  np.testing.assert_allclose(under, ex["keypoints"][rows, :2], atol=0.5)


def test_channel_noise_table_is_the_float_formula():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
  for gain in [(0.6, 1.0, 1.4), tuple(rng.uniform(0.6, 1.4, 3))]:
    want = np.clip(pixels.astype(np.float32) * np.asarray(gain, np.float32), 0, 255)
    got = pipeline.apply_gain(Image.fromarray(pixels), gain)
    np.testing.assert_array_equal(got, (want + 0.5).astype(np.uint8))


def test_worker_processes_make_the_threaded_stream(synthetic_data):
  """num_processes=1 (grain mp_prefetch, a spawned worker) yields the batches that threads in
  this process yield."""
  opts = pipeline.DataOptions(
    data_dir=str(synthetic_data), datasets=("spin_synthetic/tiny",), batch_size=4
  )
  it = pipeline.make_iterator(opts, process_index=0, process_count=1)
  want = [next(it) for _ in range(2)]
  mp = pipeline.make_iterator(
    dataclasses.replace(opts, num_processes=1), process_index=0, process_count=1
  )
  try:
    got = [next(mp) for _ in range(2)]
  finally:
    mp.close()
  for a, b in zip(got, want):
    for key in b:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
