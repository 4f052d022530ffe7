"""Light installs (docs/install.md): the body model and the fitter import none of the trainer's
dependencies, so `pip install spin-jax` and `pip install "spin-jax[fitting]"` are enough for them.

Each check imports every module of a package in a fresh interpreter and reads `sys.modules`
after each: a heavy import anywhere in the chain (a module-level `import flax` in
smpl_jax/__init__.py, a helper imported from spin_jax, ...) fails it, whether or not the
package happens to be installed here.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the trainer (the `train` extra) adds; smpl_jax must also do without the fitter's optax.
TRAIN_ONLY = ("flax", "orbax", "grain", "tensorflow_datasets", "tensorflow")
HEAVY = {"smpl_jax": TRAIN_ONLY + ("optax",), "fitting": TRAIN_ONLY}
EXCLUDED = ("smpl_jax.tools",)  # converters with their own extra (`convert`)


def _modules(package: str) -> list[str]:
  """The package and its modules, from the source tree (not the excluded subpackages)."""
  out = []
  for path in sorted((ROOT / package).rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if not any(name == e or name.startswith(e + ".") for e in EXCLUDED):
      out.append(name)
  return sorted(out, key=lambda n: (n != package, n))


def _heavy_loaded(modules: list[str], heavy: tuple[str, ...]) -> dict[str, list[str]]:
  """{module: the heavy top-level packages that importing it added to sys.modules}, importing
  the modules in order in one fresh interpreter (a heavy import is charged to the first module
  that brings it in)."""
  code = (
    "import importlib, json, sys\n"
    "heavy, out, seen = set(sys.argv[1].split(',')), {}, set()\n"
    "for name in sys.argv[2:]:\n"
    "  importlib.import_module(name)\n"
    "  now = heavy & {k.partition('.')[0] for k in sys.modules}\n"
    "  out[name], seen = sorted(now - seen), now\n"
    "print(json.dumps(out))\n"
  )
  r = subprocess.run(
    [sys.executable, "-c", code, ",".join(heavy), *modules],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert r.returncode == 0, f"importing {modules} failed:\n{r.stderr[-2000:]}"
  return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("package", ["smpl_jax", "fitting"])
def test_package_imports_no_heavy_dependency(package):
  modules = _modules(package)
  assert len(modules) > 5, modules  # the walk found the modules
  got = _heavy_loaded(modules, HEAVY[package])
  bad = {m: h for m, h in got.items() if h}
  assert not bad, (
    f"these {package} modules import the trainer's dependencies (see docs/install.md): {bad}"
  )
