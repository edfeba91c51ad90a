"""Compiling and sampling a PyMC model with nutpie, with the fixed costs cut.

``nutpie.compile_pymc_model`` (numba backend) spends most of its time in two places that do
not depend on the model's size:

* PyTensor turns the logp-and-gradient graph into a numba function. PyTensor caches those
  functions on disk across processes (``~/.pytensor/numba``), keyed by the graph and its
  constants, so a model compiled once compiles from the cache afterwards.
* nutpie wraps that function in a C callback (``numba.cfunc``) that it cannot cache (the
  wrapper is a closure), so numba links the whole logp function's bitcode into the wrapper and
  runs LLVM over it again in every process; the wrapper's ``out[...] = grad`` and
  ``np.all(np.isfinite(out))`` also make numba compile its generic array machinery.

:func:`compile_model` does what ``compile_pymc_model`` does, with these changes:

* **Data as inputs.** The model's data constants (observed values, design matrices, group
  indices, sufficient statistics, prior scales computed from the data) become inputs of the
  compiled functions instead of constants baked into the code (:func:`model_constants`). The
  compiled code then depends on the model's structure and shapes only, so refitting a model
  on other data of the same shape (edited rows, another response, a subset with the same
  levels) finds everything in the cache. The data reach the callbacks through nutpie's
  ``user_data`` pointer; parameter checks that involve the data alone are decided once at
  compile time (:func:`_settle_data_checks`).
* **Cached callbacks.** The wrappers are written as plain loops, generated from source and
  registered under a key derived from PyTensor's own cache key, so numba caches the finished
  callback too; a later process loads everything from disk.
* **Compiled in a child process.** On a cache miss the callbacks are compiled in a fresh
  Python process and loaded from the cache here, so every process runs the same saved machine
  code and a seed gives the same draws whether or not this process compiled the model
  (:func:`_compile_in_child`). The child is a new interpreter, not a fork of this one (which
  may be running threads); it costs about 1.5 s of CPU on a cache miss (interpreter start,
  importing numba and PyTensor, unpickling the functions) and nothing on a hit.
* **No prior draws for the starting point.** The LKJ blocks' support point is given as numbers
  (:func:`_support_point_overrides`), and shapes are read from the model's dims
  (:func:`_static_shapes`), so no C code is compiled for the initial point on a first run.

Everything else goes through nutpie's public API: models with shared data (``pm.Data``,
swapped later by nutpie's ``with_data``), a graph numba cannot compile with the data as inputs,
or a nutpie without the internals used here are compiled by ``nutpie.compile_pymc_model``, and
the starting point is given as its ``initial_points=`` (``nutpie.sample`` takes none for a
PyMC model: its ``init_mean`` is not used by ``CompiledPyMCModel``). Sampling results go
through Bambi's own cleaning (:func:`lmmformula._bambi.finish_fit`).

Pinned to nutpie 0.16 (``pyproject.toml``); ``tests/test_nutpie_contract.py`` hashes the
sources of the nutpie functions mirrored or called here (:data:`NUTPIE_PRIVATE_NAMES`) and
fails when a release changes them.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmmformula import _kernel

__all__ = ["CompileInfo", "compile_model", "nutpie_internals_available"]

_WRAPPER_VERSION = "lmmformula-nutpie-wrapper-3"

NUTPIE_PRIVATE_NAMES = (
    "CompiledPyMCModel",
    "_compute_shapes",
    "_prepare_dims_and_coords",
    "_rv_dict_to_flat_array_wrapper",
    "_wrap_with_lock",
)
"""The private names of ``nutpie.compile_pymc`` called here (their sources, and those of the
functions mirrored here, are pinned in ``tests/test_nutpie_contract.py``)."""

_LOGP_SRC = """
def lmmformula_logp_{key}(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
{unpack}
        logp_arr, grad = inner(x{args})
        logp_val = logp_arr.item()
        logp_[0] = logp_val
        finite = True
        for i in range({n_dim}):
            g = grad[i]
            out_[i] = g
            if not math.isfinite(g):
                finite = False
        if not finite:
            return 3
        if not math.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def lmmformula_expand_{key}(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
{unpack}
        (values,) = inner(x{args})
        for i in range({n_expanded}):
            out_[i] = values[i]
    except Exception:
        return -2
    return 0
"""


@dataclass
class CompileInfo:
    """How a model was compiled: the path taken and where the seconds went."""

    path: str = "nutpie"
    seconds: dict[str, float] = field(default_factory=dict)
    cached_wrappers: bool = False
    lifted_constants: int = 0
    kernel: str = "not tried"


def nutpie_internals_available() -> bool:
    """Whether the nutpie, PyTensor and numba internals :func:`compile_model` uses exist."""
    try:
        import numba  # noqa: F401
        from nutpie import compile_pymc as ncp
        from pytensor.link.numba.cache import (  # noqa: F401
            CACHED_SRC_FUNCTIONS,
            compile_numba_function_src,
        )
    except ImportError:
        return False
    return all(hasattr(ncp, name) for name in NUTPIE_PRIVATE_NAMES)


def _signatures():
    import numba

    logp_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    return logp_sig, expand_sig


def _as_void_ptr_intrinsic():
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _as_void_ptr(typingctx, src):
        """A void pointer from an address held in an integer."""
        sig = types.voidptr(src)

        def codegen(cgctx, builder, sig, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return sig, codegen

    return _as_void_ptr


_AS_VOID_PTR = None


def _wrapper_env(inner) -> dict:
    import math

    import numba

    global _AS_VOID_PTR
    if _AS_VOID_PTR is None:
        _AS_VOID_PTR = _as_void_ptr_intrinsic()
    return {
        "__name__": __name__,
        "numba": numba,
        "math": math,
        "np": np,
        "inner": inner,
        "_as_void_ptr": _AS_VOID_PTR,
    }


@dataclass
class _Callback:
    """A callback's generated source, registered under a cache key derived from PyTensor's
    key for the function it calls; everything a fresh process needs to compile it."""

    src: str
    name: str
    cache_key: str
    function: Any  # the PyTensor function (numba mode) whose compiled code the callback calls
    kind: str  # "logp" or "expand"
    _fn: Any = field(default=None, repr=False, compare=False)

    def python_function(self):
        """The Python function numba compiles, known to PyTensor's numba cache locator."""
        from pytensor.link.numba.cache import compile_numba_function_src

        if self._fn is None:
            self._fn = compile_numba_function_src(
                self.src,
                self.name,
                global_env=_wrapper_env(self.function.vm.jit_fn),
                cache_key=self.cache_key,
            )
        return self._fn

    def signature(self):
        logp_sig, expand_sig = _signatures()
        return logp_sig if self.kind == "logp" else expand_sig

    def __getstate__(self):  # for the child process: the Python function is made there
        return {**self.__dict__, "_fn": None}


def _wrapper_source(src_template: str, function, kind: str, **fmt) -> _Callback | None:
    """The callback calling ``function``'s numba code, under a cache key derived from
    PyTensor's key for it; ``None`` when it has none (an uncacheable graph)."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(function.vm.jit_fn, "py_func", None))
    if inner_key is None:
        return None
    text = src_template.format(key="K", **fmt)
    digest = hashlib.sha256("\n".join([_WRAPPER_VERSION, inner_key, text]).encode()).hexdigest()
    src = src_template.format(key=digest[:16], **fmt)
    name = src.split("(", 1)[0].split()[-1]
    return _Callback(src, name, f"lmmformula_{digest}", function, kind)


_KERNEL_FUNCTIONS: dict = {}  # id of a kernel's Python function -> (function, cache dir, key)
_KERNEL_LOCATOR = False


def _register_kernel_locator() -> None:
    """Point numba's cache at PyTensor's compile directory for the kernel's functions (made
    from source, so numba's own locators cannot place them); keyed by the source's hash."""
    global _KERNEL_LOCATOR
    if _KERNEL_LOCATOR:
        return
    import os

    from numba.core.caching import CacheImpl, _CacheLocator

    class KernelCacheLocator(_CacheLocator):
        def __init__(self, py_func, py_file, path, key):
            self._py_func = py_func
            self._py_file = py_file
            self._path = path
            self._key = key

        def ensure_cache_path(self):
            os.makedirs(self._path, exist_ok=True)

        def get_cache_path(self):
            return self._path

        def get_source_stamp(self):
            return 0

        def get_disambiguator(self):
            return self._key

        @classmethod
        def from_function(cls, py_func, py_file):
            entry = _KERNEL_FUNCTIONS.get(id(py_func))
            if entry is None or entry[0] is not py_func:
                return None
            return cls(py_func, py_file, entry[1], entry[2])

    CacheImpl._locator_classes.insert(0, KernelCacheLocator)
    _KERNEL_LOCATOR = True


@dataclass
class KernelCallback:
    """The kernel's callback source under a fixed cache key (what a fresh process needs to
    compile it; the interface of ``lmmformula._nutpie._Callback``). A child process compiling
    it imports numba, not PyTensor."""

    src: str
    name: str
    cache_key: str
    kind: str
    cache_dir: str
    _fn: Any = field(default=None, repr=False, compare=False)

    def python_function(self):
        if self._fn is None:
            _register_kernel_locator()
            env = _wrapper_env(None)
            exec(compile(self.src, f"<lmmformula {self.name}>", "exec"), env)
            self._fn = env[self.name]
            _KERNEL_FUNCTIONS[id(self._fn)] = (self._fn, self.cache_dir, self.cache_key)
        return self._fn

    def signature(self):
        logp_sig, expand_sig = _signatures()
        return logp_sig if self.kind == "logp" else expand_sig

    def __getstate__(self):
        return {**self.__dict__, "_fn": None}


_KERNEL_CALLBACKS: dict[str, list[KernelCallback]] = {}


def kernel_callbacks() -> list[KernelCallback]:
    """The logp and expand callbacks, cached in PyTensor's compile directory (made once per
    process)."""
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    if str(NUMBA_CACHE_PATH) in _KERNEL_CALLBACKS:
        return _KERNEL_CALLBACKS[str(NUMBA_CACHE_PATH)]
    out = _KERNEL_CALLBACKS.setdefault(str(NUMBA_CACHE_PATH), [])
    for kind, src in _kernel.SOURCES.items():
        digest = hashlib.sha256("\n".join([_kernel.KERNEL_VERSION, src]).encode()).hexdigest()
        name = src.split("(", 1)[0].split()[-1]
        key = f"lmmformula_{digest}"
        out.append(KernelCallback(src, name, key, kind, str(NUMBA_CACHE_PATH)))
    return out


def _load_cached(fn, sig):
    """The callback for ``fn`` loaded from numba's cache, or ``None`` when it is not there
    (nothing is compiled); the same steps as ``numba.core.ccallback.CFunc.compile``."""
    try:
        from numba.core import sigutils
        from numba.core.ccallback import CFunc
        from numba.core.compiler_lock import global_compiler_lock

        cf = CFunc(fn, sigutils.normalize_signature(sig), locals={}, options={})
        cf.enable_caching()
        with global_compiler_lock:
            cres = cf._cache.load_overload(cf._sig, cf._targetdescr.target_context)
            if cres is None:
                return None
            cf._cache_hits += 1
            cf._library = cres.library
            cf._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
            cf._wrapper_address = cf._library.get_pointer_to_function(cf._wrapper_name)
        return cf
    except Exception:
        return None


class CompileFailed(RuntimeError):
    """numba could not compile a callback (the caller falls back to another path)."""


_CHILD_COMPILE_FAILED = 3  # the child's exit status when numba fails

# The package's ``__init__`` (pandas, formulae: seconds) is not needed in the child: the module
# is loaded under its own name (the pickled jobs refer to it) from an empty package.
_CHILD_CODE = """
import sys, types
package = types.ModuleType("lmmformula")
package.__path__ = [sys.argv[1]]
sys.modules["lmmformula"] = package
from lmmformula._nutpie import _child_main
sys.exit(_child_main(sys.argv[2]))
"""


def _compile_in_child(jobs: list, meanwhile=None) -> bool | None:
    """Compile and cache callbacks in fresh Python processes, one per callback and all at
    once: ``True`` when it succeeded, ``False`` when numba failed there, ``None`` when no
    child process could do the work (the jobs cannot be pickled, no interpreter starts, the
    child cannot import what it needs). ``meanwhile()`` runs here while the children work.

    A process that compiles numba code runs the freshly generated machine code, which can
    differ in the last bits from the code numba saves and every later process loads; summed
    over thousands of gradient evaluations that gives other draws for the same seed. Compiling
    in a child and loading the saved code here makes the first fit of a model draw exactly
    what every later fit draws. The child is a new interpreter (not a fork of this process,
    whose threads may hold locks): the PyTensor functions travel pickled, and the child finds
    their numba code in PyTensor's cache under the same keys.
    """
    import os
    import pickle
    import subprocess
    import sys
    import tempfile

    def run_meanwhile():
        if meanwhile is not None:
            meanwhile()

    if not sys.executable:
        run_meanwhile()
        return None
    try:
        payloads = [pickle.dumps([job], protocol=pickle.HIGHEST_PROTOCOL) for job in jobs]
    except Exception:
        run_meanwhile()
        return None
    package_dir = os.path.dirname(os.path.abspath(__file__))
    codes = []
    with tempfile.TemporaryDirectory(prefix="lmmformula-compile-") as tmp:
        children = []
        try:
            for i, payload in enumerate(payloads):
                path = os.path.join(tmp, f"job{i}.pickle")
                with open(path, "wb") as f:
                    f.write(payload)
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _CHILD_CODE, package_dir, path],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )
        except OSError:
            codes.append(None)
        try:
            run_meanwhile()
        finally:
            for child in children:
                child.communicate()
                codes.append(child.returncode)
    if _CHILD_COMPILE_FAILED in codes:
        return False
    return True if all(code == 0 for code in codes) else None


def _child_main(path: str) -> int:
    """The child process: compile the pickled callbacks into numba's cache; exit status
    ``_CHILD_COMPILE_FAILED`` when numba fails (any other failure means the child could not
    do its work, and the parent compiles in its own process)."""
    import pickle

    import numba

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(path, "rb") as f:
            jobs = pickle.load(f)
        try:
            for job in jobs:
                numba.cfunc(job.signature(), cache=True)(job.python_function())
        except Exception:
            import traceback

            traceback.print_exc()
            return _CHILD_COMPILE_FAILED
    return 0


def _cached_cfuncs(jobs: list, meanwhile=None):
    """``numba.cfunc`` callbacks from numba's cache, compiling the missing ones in child
    processes first (see :func:`_compile_in_child`); ``meanwhile()`` runs while they work
    (or right away when nothing is missing)."""
    import numba

    out = [_load_cached(job.python_function(), job.signature()) for job in jobs]
    missing = [job for job, cf in zip(jobs, out, strict=True) if cf is None]
    if not missing and meanwhile is not None:
        meanwhile()
    if missing:
        status = _compile_in_child(missing, meanwhile)
        if status is False:
            raise CompileFailed("numba could not compile the model's callbacks")
        if status:
            out = [
                cf if cf is not None else _load_cached(job.python_function(), job.signature())
                for job, cf in zip(jobs, out, strict=True)
            ]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=numba.NumbaWarning)
        for i, (job, cf) in enumerate(zip(jobs, out, strict=True)):
            if cf is None:  # no child process, or an unusable cache: compile here
                fn, sig = job.python_function(), job.signature()
                try:
                    out[i] = numba.cfunc(sig, cache=True)(fn)
                except Exception:
                    out[i] = numba.cfunc(sig)(fn)
    return out


def _uncached_cfunc(src_template: str, inner, sig, **fmt):
    """A callback like :func:`_cached_cfuncs`' (for a graph PyTensor cannot cache), compiled in
    this process only."""
    import numba

    src = src_template.format(key="uncached", **fmt)
    name = src.split("(", 1)[0].split()[-1]
    env = _wrapper_env(inner)
    exec(compile(src, f"<lmmformula {name}>", "exec"), env)
    return numba.cfunc(sig)(env[name])


def _is_rv_like(node) -> bool:
    from pytensor.tensor.random.op import RandomVariable

    return isinstance(node.op, RandomVariable)


_STRUCTURAL_SCALARS = frozenset({0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0})


def _liftable(constant) -> bool:
    """Whether a model constant holds data (or a data-derived setting) rather than structure.

    Float arrays and float scalars other than a few small numbers are data (observed values,
    design matrices, prior scales computed from the data, sufficient statistics); integer
    arrays of 16 or more entries are group index arrays. Small integer vectors (sizes, shapes)
    and integer scalars stay constants, since rewrites and shapes depend on them.
    """
    from pytensor.tensor.type import TensorType

    if not isinstance(constant.type, TensorType):
        return False
    data = np.asarray(constant.data)
    kind = data.dtype.kind
    if kind == "f":
        if data.ndim == 0:
            return float(data) not in _STRUCTURAL_SCALARS
        return data.size > 0
    if kind in "iu":
        return data.ndim >= 1 and data.size >= 16
    return False


def model_constants(model) -> list:
    """The constants in a PyMC model's specification that hold data, in a stable order.

    Collected from the parameters of every random variable, the observed values, potentials
    and deterministics; sizes and random generators are left out. The log density built from
    the model reuses these very constant objects, so they can be swapped for inputs there.
    """
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import ancestors

    roots = []
    for rv in model.basic_RVs:
        node = rv.owner
        if _is_rv_like(node):
            roots.extend(node.op.dist_params(node))
        else:
            roots.extend(node.inputs)
    roots.extend(model.rvs_to_values[rv] for rv in model.observed_RVs)
    roots.extend(model.potentials)
    roots.extend(model.deterministics)
    found, seen = [], set()
    for var in ancestors(roots):
        if isinstance(var, Constant) and id(var) not in seen and _liftable(var):
            seen.add(id(var))
            found.append(var)
    return found


def _static_shapes(model) -> dict[str, tuple[int, ...]] | None:
    """Every traced variable's shape from its static type and its dims' lengths, or ``None``
    when one is unknown (then nutpie's shape function is compiled instead)."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant

    def dim_length(dim):
        length = model.dim_lengths.get(dim)
        if isinstance(length, SharedVariable):
            return int(length.get_value())
        if isinstance(length, Constant):
            return int(length.data)
        return None

    values_to_rvs = {v: rv for rv, v in model.rvs_to_values.items()}
    shapes = {}
    for var in model.value_vars + model.free_RVs + model.deterministics:
        if var in model.observed_RVs or var in model.potentials:
            continue
        shape = list(getattr(var.type, "shape", None) or ())
        if len(shape) != var.type.ndim:
            return None
        if any(s is None for s in shape):
            rv = values_to_rvs.get(var, var)
            dims = model.named_vars_to_dims.get(rv.name) or ()
            if len(dims) != len(shape):
                return None
            for i, dim in enumerate(dims):
                if shape[i] is None:
                    shape[i] = dim_length(dim) if dim is not None else None
            if any(s is None for s in shape):
                return None
        shapes[var.name] = tuple(int(s) for s in shape)
    return shapes


def _lay_out(names_and_shapes, start: int):
    """Names, slices and shapes of variables laid end to end in a flat vector from ``start``,
    and where the vector ends."""
    from math import prod

    names, slices, shapes = [], [], []
    for name, shape in names_and_shapes:
        shape = tuple(int(s) for s in shape)
        names.append(name)
        shapes.append(shape)
        slices.append(slice(start, start + prod(shape)))
        start += prod(shape)
    return names, slices, shapes, start


@dataclass
class _Functions:
    n_dim: int
    n_expanded: int
    logp_fn_pt: Any
    expand_fn_pt: Any
    initial_point_fn: Any
    shape_info: tuple
    reparameterized_names: list[str]
    logp_data: list[np.ndarray]
    expand_data: list[np.ndarray]


def _make_functions_lifted(model, *, pymc_initial_point_fn, var_names=None) -> _Functions:
    """``nutpie.compile_pymc._make_functions`` (numba, with gradient, joined expansion) with
    the model's data constants turned into inputs of the compiled functions.

    The compiled code then depends on the model's structure and shapes only, so PyTensor's
    numba cache and the cached callbacks serve a model refitted on other data with the same
    shapes (another response, edited rows, other prior scales) without compiling again. The
    data arrays reach the callbacks through nutpie's ``user_data`` pointer.
    """

    import pytensor.tensor as pt
    from nutpie import compile_pymc as ncp
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph import clone_replace, rewrite_graph
    from pytensor.graph.traversal import ancestors

    shapes = _static_shapes(model)
    if shapes is None:
        shapes = ncp._compute_shapes(model)

    constants = model_constants(model)
    arrays = [c for c in constants if c.type.ndim > 0]
    scalars = [c for c in constants if c.type.ndim == 0]
    lifted = {c: c.type(name=f"lmmformula_data_{i}") for i, c in enumerate(arrays)}
    # scalars travel together as one vector (0-d inputs trip PyTensor's numba fusion)
    data = {v: c.data for c, v in lifted.items()}
    replace = dict(lifted)
    if scalars:
        vector = pt.TensorType("float64", shape=(len(scalars),))(name="lmmformula_scalars")
        data[vector] = np.array([float(c.data) for c in scalars], dtype=np.float64)
        for i, c in enumerate(scalars):
            replace[c] = vector[i].astype(c.type.dtype)
    value_vars = [model.rvs_to_values[var] for var in model.free_RVs]

    logp = model.logp()
    if replace:
        (logp,) = clone_replace([logp], replace)
        logp = _settle_data_checks(logp, value_vars, data, model)
    rewrites = ["canonicalize", "stabilize"]
    if not model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = rewrite_graph(logp, include=rewrites)
    grads = pt.grad(logp, value_vars)
    grad = pt.concatenate([pt.as_tensor(g, allow_xtensor_conversion=True).ravel() for g in grads])

    free_names = [model.rvs_to_values[var].name for var in model.free_RVs]
    joined_names, joined_slices, joined_shapes, n_dim = _lay_out(
        [(name, shapes[name]) for name in free_names], 0
    )

    initial_point_fn = ncp._rv_dict_to_flat_array_wrapper(
        pymc_initial_point_fn, names=joined_names, shapes=joined_shapes
    )
    joined = pt.TensorType("float64", shape=(n_dim,))(name="_unconstrained_point")
    variables = [joined[s] for s in joined_slices]
    replacements = {
        model.rvs_to_values[var]: value.reshape(shape).astype(var.dtype)
        for var, shape, value in zip(model.free_RVs, joined_shapes, variables, strict=True)
    }
    logp, grad = clone_replace([logp, grad], replacements)
    narrow = _narrow_index_data([logp, grad], data)
    if narrow:
        logp, grad = clone_replace([logp, grad], narrow, rebuild_strict=False)
    logp_inputs = [v for v in ancestors([logp, grad]) if v in data]
    with model:
        logp_fn_pt = compile_pymc(
            (joined, *logp_inputs), (logp, grad), mode="NUMBA", on_unused_input="ignore"
        )

    reparameterized_names = [
        model.rvs_to_values[var].name
        for var in model.free_RVs
        if model.rvs_to_transforms.get(var) is not None
    ]
    remaining = [var for var in model.unobserved_value_vars if var.name not in joined_names]
    if var_names is not None:
        names = set(var_names)
        remaining = [var for var in remaining if var.name in names]
    more_names, more_slices, more_shapes, n_expanded = _lay_out(
        [(var.name, shapes[var.name]) for var in remaining], n_dim
    )
    all_names = joined_names + more_names
    all_slices = joined_slices + more_slices
    all_shapes = joined_shapes + more_shapes
    expanded = pt.concatenate(
        [
            *[v.ravel() for v in variables],
            *[pt.as_tensor(v, allow_xtensor_conversion=True).ravel() for v in remaining],
        ]
    )
    (expanded,) = clone_replace([expanded], {**replacements, **replace})
    narrow = _narrow_index_data([expanded], data)
    if narrow:
        (expanded,) = clone_replace([expanded], narrow, rebuild_strict=False)
    expand_inputs = [v for v in ancestors([expanded]) if v in data]
    with model:
        expand_fn_pt = compile_pymc(
            (joined, *expand_inputs), [expanded], mode="NUMBA", on_unused_input="ignore"
        )
    # only the arrays the compiled functions read (narrowed codes replace their int64 originals)
    values = {v: np.array(data[v], order="C") for v in dict.fromkeys(logp_inputs + expand_inputs)}
    return _Functions(
        n_dim=n_dim,
        n_expanded=n_expanded,
        logp_fn_pt=logp_fn_pt,
        expand_fn_pt=expand_fn_pt,
        initial_point_fn=initial_point_fn,
        shape_info=(all_names, all_slices, all_shapes),
        reparameterized_names=reparameterized_names,
        logp_data=[values[v] for v in logp_inputs],
        expand_data=[values[v] for v in expand_inputs],
    )


def _data_only_checks(logp, params) -> list[tuple[Any, Any]]:
    """``(check node, condition)`` for every parameter-check condition in ``logp`` that
    involves none of ``params``."""
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.graph.traversal import ancestors

    params = set(params)
    found = []
    for var in ancestors([logp]):
        node = var.owner
        if (
            node is None
            or not isinstance(node.op, CheckParameterValue)
            or var is not node.outputs[0]
        ):
            continue
        for cond in node.inputs[1:]:
            if not any(v in params for v in ancestors([cond])):
                found.append((node, cond))
    return found


def _evaluate(conds, data: dict) -> list:
    """Values of ``conds`` (PyTensor's Python linker: nothing is compiled)."""
    import pytensor
    from pytensor.compile.mode import Mode
    from pytensor.graph.traversal import ancestors

    inputs = [v for v in data if any(v is a for a in ancestors(conds))]
    fn = pytensor.function(
        inputs, conds, mode=Mode(linker="py", optimizer=None), on_unused_input="ignore"
    )
    return fn(*[data[v] for v in inputs])


def _settle_data_checks(logp, value_vars, data: dict, model=None):
    """Decide the parameter checks that depend on the data alone, once, here.

    With the data as constants, PyTensor folds checks such as ``sigma > 0`` on a prior's scale
    away; as inputs they would be checked at every gradient evaluation. The conditions that do
    not involve a model variable are evaluated now and dropped from the graph; one that fails
    raises :class:`~lmmformula.errors.ModelError` naming the variable whose distribution it
    belongs to (sampling could not start from any point).
    """
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.graph.rewriting.basic import in2out, node_rewriter
    from pytensor.graph.rewriting.utils import rewrite_graph

    checks = _data_only_checks(logp, value_vars)
    if not checks:
        return logp
    values = _evaluate([c for _, c in checks], data)
    failed = [node.op.msg for (node, _), v in zip(checks, values, strict=True) if not np.all(v)]
    if failed:
        raise _invalid_parameter_error(model, failed)
    settled = {id(c) for _, c in checks}

    @node_rewriter([CheckParameterValue])
    def drop_settled(fgraph, node):
        keep = [c for c in node.inputs[1:] if id(c) not in settled]
        if len(keep) == len(node.inputs) - 1:
            return None
        if not keep:
            return [node.inputs[0]]
        return [node.op(node.inputs[0], *keep)]

    return rewrite_graph(logp, include=(), custom_rewrite=in2out(drop_settled))


def _invalid_parameter_error(model, messages):
    """A ModelError naming the variables whose fixed parameters fail their checks."""
    from lmmformula.errors import ModelError

    names = []
    if model is not None:
        for rv in [*model.free_RVs, *model.observed_RVs]:
            try:
                logp = model.logp(vars=[rv])
                checks = _data_only_checks(logp, model.value_vars)
                values = _evaluate([c for _, c in checks], {}) if checks else []
            except Exception:
                continue
            if any(not np.all(v) for v in values):
                names.append(rv.name)
    where = f" of {', '.join(repr(n) for n in names)}" if names else ""
    checks = "; ".join(dict.fromkeys(m for m in messages if m)) or "a parameter check"
    return ModelError(
        f"the distribution{where} has a fixed parameter out of its range ({checks}): a prior's "
        "parameter or a value computed from the data is invalid, so no starting point has a "
        "finite log density. Check the priors (prior_summary()) and the data."
    )


def _narrow_index_data(outputs, data: dict) -> dict:
    """Integer data used only as indices, as the smallest unsigned type that holds them.

    PyTensor stores an integer constant in the smallest type that holds it (group codes of a
    few thousand levels as uint16), which the indexing loops read at a quarter of the memory
    traffic of int64; data passed at run time get the same. Adds the narrowed arrays to
    ``data`` and returns the replacements.
    """
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor

    first_index = {AdvancedSubtensor: 1, AdvancedIncSubtensor: 2}
    candidates = {
        v for v, d in data.items() if np.asarray(d).dtype.kind in "iu" and np.asarray(d).ndim
    }
    index_only = dict.fromkeys(candidates, False)
    for var in ancestors(outputs):
        node = var.owner
        if node is None or var is not node.outputs[0]:
            continue
        start = first_index.get(type(node.op))
        for pos, inp in enumerate(node.inputs):
            if inp in index_only:
                if start is not None and pos >= start and index_only[inp] is not None:
                    index_only[inp] = True
                else:
                    index_only[inp] = None  # used as something other than an index
    out = {}
    for var, only in index_only.items():
        values = np.asarray(data[var])
        if not only or values.size == 0 or values.min() < 0:
            continue
        dtype = np.min_scalar_type(int(values.max()))
        if dtype.itemsize >= values.dtype.itemsize:
            continue
        new = var.type.clone(dtype=dtype.name)(name=var.name)
        data[new] = values.astype(dtype)
        out[var] = new
    return out


def _data_unpack(arrays: list[np.ndarray], offset: int, n_ptrs: int) -> dict[str, str]:
    """The ``unpack`` and ``args`` parts of a callback's source: views of the data arrays
    behind the pointers in ``user_data``, and the arguments that pass them on (empty when
    there are no data)."""
    if not arrays:
        return {"unpack": "", "args": ""}
    lines = [f"        ptrs = numba.carray(user_data_, ({n_ptrs},), np.uint64)"]
    args = []
    for i, arr in enumerate(arrays):
        shape = "(" + "".join(f"{s}, " for s in arr.shape) + ")"
        lines.append(
            f"        d{i} = numba.carray(_as_void_ptr(ptrs[{offset + i}]), {shape}, "
            f"np.{arr.dtype.name})"
        )
        args.append(f", d{i}")
    return {"unpack": "\n".join(lines), "args": "".join(args)}


def compile_model(
    model, var_names=None, initial_points: dict | None = None, backend=None
) -> tuple[Any, CompileInfo]:
    """Compile a PyMC model for nutpie (numba backend); see the module notes.

    Parameters
    ----------
    model : pymc.Model
    var_names : list of str, optional
        Variables to store in the trace (default: all).
    initial_points : dict, optional
        Starting values (or strategies) by variable name, as for
        ``nutpie.compile_pymc_model(initial_points=)``; the default is PyMC's support point,
        with the LKJ blocks' given as numbers (:func:`_support_point_overrides`).
    backend : lmmformula's Bambi backend, optional
        With it, a model the whole-model kernel covers is compiled as that kernel
        (:mod:`lmmformula._kernel`, checked against PyMC's graph first).

    Returns
    -------
    compiled : nutpie compiled model
    info : CompileInfo
    """
    import nutpie

    if initial_points is None:
        initial_points = _support_point_overrides(model)
    info = CompileInfo()
    fns = None
    t0 = time.perf_counter()
    compiled = None
    if (
        backend is not None
        and _kernel.ENABLED
        and nutpie_internals_available()
        and not _has_shared_data(model)
    ):
        compiled = _compile_kernel(model, backend, var_names, initial_points, info)
    if compiled is not None:
        info.seconds["total"] = time.perf_counter() - t0
        return compiled, info
    if nutpie_internals_available() and not _has_shared_data(model):
        fns = _make_functions_lifted(
            model,
            pymc_initial_point_fn=_initial_point_fn(model, initial_points),
            var_names=var_names,
        )
    t1 = time.perf_counter()
    info.seconds["graph"] = t1 - t0
    if fns is not None:
        try:
            compiled = _compile_lifted(model, fns, info)
            info.path = "lmmformula"
        except Exception:
            # numba cannot type some graph with the data as inputs: nutpie's own path, with
            # the data as constants, which always worked for these models
            info.lifted_constants = 0
    if compiled is None:
        # shared data (``pm.Data``, swapped later by ``with_data``) or a failed compile above
        compiled = nutpie.compile_pymc_model(
            model, var_names=var_names, initial_points=initial_points
        )
    info.seconds["numba"] = time.perf_counter() - t1
    info.seconds["total"] = time.perf_counter() - t0
    return compiled, info


def kernel_functions(bambi_model, var_names=None):
    """``(plan, logp callback, expand callback)`` of the whole-model kernel for a built
    Bambi model (:mod:`lmmformula._kernel`); raises ``_kernel.Unsupported`` when it does not
    cover the model. Nothing is checked against PyMC here."""
    from lmmformula import _bambi

    model = _bambi.pymc_model(bambi_model)
    if var_names is None:
        var_names = _bambi.sampled_var_names(bambi_model)
    plan = _kernel_plan(model, bambi_model.backend, var_names)
    logp_cfunc, expand_cfunc = _cached_cfuncs(kernel_callbacks())
    return plan, logp_cfunc, expand_cfunc


def _kernel_plan(model, backend, var_names):
    """The kernel's tables for a built model (``_kernel.Unsupported`` when not covered)."""
    from nutpie import compile_pymc as ncp

    from lmmformula import _bambi

    shapes = _static_shapes(model)
    if shapes is None:
        shapes = ncp._compute_shapes(model)
    return _kernel.plan_model(_bambi.kernel_model(backend), model, var_names, shapes)


def _compile_kernel(model, backend, var_names, initial_points: dict, info: CompileInfo):
    """The model as lmmformula's whole-model kernel (:mod:`lmmformula._kernel`), or ``None``
    when the kernel does not cover it or disagrees with PyMC's graph (the reason is kept in
    ``info.kernel``)."""
    from nutpie import compile_pymc as ncp

    t0 = time.perf_counter()
    try:
        plan = _kernel_plan(model, backend, var_names)
    except _kernel.Unsupported as reason:
        info.kernel = f"not used: {reason}"
        return None
    t1 = time.perf_counter()
    ready = {}

    def prepare_check():  # while the callbacks compile in child processes
        names, _, shapes_ = plan.shape_info
        n_free = len(model.free_RVs)
        ready["initial_point_fn"] = ncp._rv_dict_to_flat_array_wrapper(
            _initial_point_fn(model, initial_points), names=names[:n_free], shapes=shapes_[:n_free]
        )
        ready["x0"] = ready["initial_point_fn"](0)
        ready["reference"] = _kernel.reference_functions(model, plan)

    try:
        logp_cfunc, expand_cfunc = _cached_cfuncs(kernel_callbacks(), meanwhile=prepare_check)
        t2 = time.perf_counter()
        _kernel.verify(
            model, plan, logp_cfunc, expand_cfunc, ready["x0"], reference=ready["reference"]
        )
    except Exception as err:  # a mismatch, or anything that kept the check from running
        if _kernel.STRICT:
            raise
        info.kernel = f"not used: {type(err).__name__}: {err}"
        return None
    t3 = time.perf_counter()
    info.path = "kernel"
    info.kernel = "used"
    # numba: compiling (or loading) the callbacks, with the check's reference made meanwhile
    info.seconds.update({"graph": t1 - t0, "numba": t2 - t1, "check": t3 - t2})
    for arr in (plan.ints, plan.floats):
        arr.flags.writeable = False
    return _compiled_pymc_model(
        model,
        plan,
        (logp_cfunc, expand_cfunc),
        ready["initial_point_fn"],
        {"lmmformula_kernel_ints": plan.ints, "lmmformula_kernel_floats": plan.floats},
        plan.pointers(),
    )


def _initial_point_fn(model, initial_points: dict):
    """The starting-point function ``nutpie.compile_pymc_model`` makes from its
    ``initial_points``, ``default_initialization_strategy="support_point"`` and ``jitter_rvs``
    defaults (pinned in ``tests/test_nutpie_contract.py``)."""
    from nutpie import compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn

    initial_point_fn = make_initial_point_fn(
        model=model,
        overrides=initial_points,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    return ncp._wrap_with_lock(initial_point_fn)


def _support_point_overrides(model) -> dict[str, np.ndarray]:
    """Numeric starting points for the LKJ blocks: PyMC's own support point (a packed
    identity Cholesky factor), given as numbers.

    PyMC builds it as ``zeros_like(rv)``, whose shape the fast-compile mode used for the
    initial point cannot infer without drawing ``rv`` from the prior, which compiles the LKJ
    sampler's scan to C (about 5 s on a first run). The value is the same.
    """
    from pymc.distributions.multivariate import _LKJCholeskyCovRV

    overrides = {}
    for rv in model.free_RVs:
        if not isinstance(rv.owner.op, _LKJCholeskyCovRV) or model.rvs_to_initial_values.get(rv):
            continue
        (size,) = rv.type.shape if rv.type.ndim == 1 else (None,)
        if size is None:
            continue
        n = (int(np.sqrt(8 * size + 1)) - 1) // 2
        value = np.zeros(size)
        value[np.cumsum(np.arange(1, n + 1)) - 1] = 1.0
        overrides[rv.name] = value
    return overrides


def _has_shared_data(model) -> bool:
    """Whether the model holds shared data (``pm.Data`` or other shared tensors; random
    generators and dimension lengths do not count)."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.type import TensorType

    dim_lengths = {id(v) for v in model.dim_lengths.values()}
    roots = [*model.basic_RVs, *model.potentials, *model.deterministics]
    return any(
        isinstance(v, SharedVariable)
        and isinstance(v.type, TensorType)
        and id(v) not in dim_lengths
        for v in ancestors(roots)
    )


def _compile_lifted(model, fns: _Functions, info: CompileInfo):
    """Callbacks for functions whose data arrive through ``user_data`` (an array of pointers
    to the data arrays, kept alive by the compiled model)."""
    import numba

    arrays = [*fns.logp_data, *fns.expand_data]
    storage = {f"lmmformula_data_{i}": arr for i, arr in enumerate(arrays)}
    for arr in storage.values():
        arr.flags.writeable = False
    pointers = np.array([arr.ctypes.data for arr in arrays] or [0], dtype=np.uint64)
    n_ptrs = pointers.size
    logp_sig, expand_sig = _signatures()
    logp_fmt = dict(n_dim=fns.n_dim, **_data_unpack(fns.logp_data, 0, n_ptrs))
    expand_fmt = dict(
        n_dim=fns.n_dim,
        n_expanded=fns.n_expanded,
        **_data_unpack(fns.expand_data, len(fns.logp_data), n_ptrs),
    )
    logp_fn = fns.logp_fn_pt.vm.jit_fn
    expand_fn = fns.expand_fn_pt.vm.jit_fn
    logp_src = _wrapper_source(_LOGP_SRC, fns.logp_fn_pt, "logp", **logp_fmt)
    expand_src = _wrapper_source(_EXPAND_SRC, fns.expand_fn_pt, "expand", **expand_fmt)
    if logp_src is not None and expand_src is not None:
        logp_cfunc, expand_cfunc = _cached_cfuncs([logp_src, expand_src])
        info.cached_wrappers = True
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=numba.NumbaWarning)
            logp_cfunc = _uncached_cfunc(_LOGP_SRC, logp_fn, logp_sig, **logp_fmt)
            expand_cfunc = _uncached_cfunc(_EXPAND_SRC, expand_fn, expand_sig, **expand_fmt)
    info.lifted_constants = len(arrays)
    return _compiled_pymc_model(
        model,
        fns,
        (logp_cfunc, expand_cfunc),
        fns.initial_point_fn,
        storage,
        pointers,
        (fns.logp_fn_pt, fns.expand_fn_pt),
    )


def _compiled_pymc_model(
    model, layout, cfuncs, initial_point_fn, storage: dict, pointers, pytensor_fns=(None, None)
):
    """nutpie's compiled model from the callbacks and what they read: ``layout`` has
    ``n_dim``, ``n_expanded``, ``shape_info`` and ``reparameterized_names``; ``storage`` the
    arrays behind ``pointers`` (nutpie's ``user_data``), kept alive by the model."""
    from nutpie import compile_pymc as ncp

    dims, coords = ncp._prepare_dims_and_coords(
        model, layout.shape_info, layout.reparameterized_names
    )
    return ncp.CompiledPyMCModel(
        _n_dim=layout.n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*layout.shape_info, strict=True)},
        compiled_logp_func=cfuncs[0],
        compiled_expand_func=cfuncs[1],
        initial_point_func=initial_point_fn,
        shared_data=storage,
        shared_var_keys={},
        user_data=pointers,
        n_expanded=layout.n_expanded,
        shape_info=layout.shape_info,
        logp_func=pytensor_fns[0],
        expand_func=pytensor_fns[1],
        reparameterized_names=layout.reparameterized_names,
    )


def sample_bambi(
    bambi_model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed,
    nuts: dict | None,
    progressbar: bool,
):
    """Sample a built Bambi model with nutpie directly (not through ``bambi.Model.fit``).

    Seeds, cores and the returned data follow ``pm.sample(nuts_sampler="nutpie")``, and the
    result goes through Bambi's own cleaning (:func:`lmmformula._bambi.finish_fit`: the
    intercept is un-centered, offsets are dropped), so the result has the layout of
    ``bambi.Model.fit(inference_method="nutpie")``;
    the draws themselves differ in their last bits and then chaotically, since the data enter
    the compiled code as inputs rather than constants.

    Returns
    -------
    idata : xarray.DataTree
    timings : dict
        ``compile`` and ``sample`` seconds, plus the compile stages.
    """
    import os

    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata
    from pymc.util import get_random_generator

    from lmmformula import _bambi

    model = _bambi.pymc_model(bambi_model)
    var_names = _bambi.sampled_var_names(bambi_model)
    start = time.perf_counter()
    compiled, info = compile_model(model, var_names=var_names, backend=bambi_model.backend)
    compiled_at = time.perf_counter()

    if cores is None:
        cores = min(4, os.cpu_count() or 1)
    cores = min(cores, chains)
    rngs = get_random_generator(random_seed).spawn(chains)
    seed = int(rngs[0].integers(2**30))
    settings = dict(nuts or {})
    if "max_treedepth" in settings:
        settings["maxdepth"] = settings.pop("max_treedepth")
    compiled, restore_dims = _comma_free_dims(compiled)
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=max(int(tune), 1),  # nuts-rs needs at least one tuning step
        chains=chains,
        cores=cores,
        seed=seed,
        save_warmup=False,
        progress_bar=progressbar,
        **settings,
    )
    sampled_at = time.perf_counter()
    if restore_dims:
        idata = idata.map_over_datasets(
            lambda ds: ds.rename({k: v for k, v in restore_dims.items() if k in ds.dims})
        )
    patch_nutpie_idata(idata, model, sampling_time=sampled_at - compiled_at)
    _add_observed_data(idata, bambi_model)
    idata = _bambi.finish_fit(bambi_model, idata)
    timings = {
        "compile": compiled_at - start,
        "sample": sampled_at - compiled_at,
        **{f"compile_{k}": v for k, v in info.seconds.items() if k != "total"},
    }
    return idata, timings


def _comma_free_dims(compiled):
    """The compiled model with dimension names that contain commas renamed, and the renaming
    back.

    nutpie writes a variable's dims into one comma-separated string and splits it again after
    sampling, so a Bambi dim such as ``poly(Days, 2)_dim`` or ``C(Days, Sum)_dim`` would come
    back as two dims and the draws could not be stored.
    """
    import dataclasses

    dims = dict(compiled.dims or {})
    names = {d for var_dims in dims.values() for d in (var_dims or ()) if d and "," in d}
    if not names:
        return compiled, {}
    rename = {name: f"__lmmformula_dim_{i}" for i, name in enumerate(sorted(names))}
    dims = {k: [rename.get(d, d) for d in v] if v else v for k, v in dims.items()}
    coords = {rename.get(k, k): v for k, v in (compiled._coords or {}).items()}
    compiled = dataclasses.replace(compiled, dims=dims, _coords=coords)
    return compiled, {v: k for k, v in rename.items()}


def _add_observed_data(idata, bambi_model) -> None:
    """Put the response in ``observed_data`` when the graph has no observed variable (the
    sufficient-statistics likelihood), as a full-data fit would."""
    import xarray as xr

    if not hasattr(idata, "children"):  # e.g. an approximation from inference_method="vi"
        return
    group = idata["observed_data"].to_dataset() if "observed_data" in idata.children else None
    if group is not None and len(group.data_vars):
        return
    response = bambi_model.response_term
    name = response.alias or response.name
    values = np.squeeze(np.asarray(response.data))
    if values.ndim != 1:
        return
    attrs = dict(group.attrs) if group is not None else {}
    ds = xr.Dataset(
        {name: (("__obs__",), values)},
        coords={"__obs__": np.arange(values.size)},
        attrs=attrs,
    )
    idata["observed_data"] = xr.DataTree(ds)
