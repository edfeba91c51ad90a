"""Saving and loading fits: one netCDF file with the ArviZ groups, the data and the model spec.

The file is an ordinary netCDF-4 file that ArviZ/xarray can open (``xarray.open_datatree``).
Besides the ArviZ groups (``posterior``, ``sample_stats``, ``observed_data`` and, when computed,
``log_likelihood`` and ``posterior_predictive``) it holds a group ``lmmformula_data`` with the
rows the model used and, in the root attributes, the model's specification as JSON, so that
:func:`load_fit` rebuilds the same model around the stored draws.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmmformula.errors import FitError, LmmFormulaError

__all__ = ["StoredFit", "read_fit", "save_fit"]

FORMAT = "lmmformula-fit"
FORMAT_VERSION = 1
DATA_GROUP = "lmmformula_data"
_JSON_PREFIX = "__json__:"
_ENGINE = "h5netcdf"
_OBJECTS_ATTR = "__lmmformula_objects__"


# -- attribute codec: netCDF attributes hold scalars and strings only -------------------------
def _encode_attrs(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, str) or (
            isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_))
        ):
            out[key] = value
        else:
            out[key] = _JSON_PREFIX + json.dumps(_jsonable(value))
    return out


def _decode_attrs(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, str) and value.startswith(_JSON_PREFIX):
            out[key] = json.loads(value[len(_JSON_PREFIX) :])
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- object arrays: netCDF stores strings, not None; each value is kept as JSON text -------------
def _encode_objects(da: xr.DataArray) -> xr.DataArray:
    flat = [
        json.dumps(_jsonable(v)) if _is_plain(v) else json.dumps(str(v)) for v in da.values.ravel()
    ]
    out = da.copy(data=np.array(flat, dtype=object).reshape(da.shape))
    out.attrs = {**da.attrs, _OBJECTS_ATTR: "json"}
    return out


def _decode_objects(da: xr.DataArray) -> xr.DataArray:
    flat = np.empty(da.size, dtype=object)
    for i, text in enumerate(da.values.ravel()):
        flat[i] = json.loads(str(text))
    out = da.copy(data=flat.reshape(da.shape))
    out.attrs = {k: v for k, v in da.attrs.items() if k != _OBJECTS_ATTR}
    return out


# -- priors -------------------------------------------------------------------------------------
def _encode_prior(value: Any) -> Any:
    from lmmformula._bambi import Prior

    if isinstance(value, Prior):
        return {
            "__bambi_prior__": value.name,
            "args": {k: _encode_prior(v) for k, v in value.args.items()},
            "noncentered": value.noncentered,
        }
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return {"__lmm_prior__": value.to_dict()}
    if isinstance(value, dict):
        return {str(k): _encode_prior(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_prior(v) for v in value]
    return _jsonable(value)


def _decode_prior(value: Any) -> Any:
    from lmmformula._bambi import Prior

    if isinstance(value, dict) and "__bambi_prior__" in value:
        args = {k: _decode_prior(v) for k, v in value["args"].items()}
        args = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in args.items()}
        prior = Prior(value["__bambi_prior__"], **args)
        prior.noncentered = value.get("noncentered")
        return prior
    if isinstance(value, dict) and "__lmm_prior__" in value:
        from lmmformula.priors import PriorSpec

        return PriorSpec.from_dict(value["__lmm_prior__"])
    if isinstance(value, dict):
        return {k: _decode_prior(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_prior(v) for v in value]
    return value


# -- data frame <-> dataset ---------------------------------------------------------------------
def _frame_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    variables = {}
    dtypes = {}
    for i, name in enumerate(frame.columns):
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            dtypes[name] = {
                "kind": "category",
                "categories": [str(c) for c in col.cat.categories],
                "ordered": bool(col.cat.ordered),
                "categories_dtype": str(col.cat.categories.dtype),
            }
            values = col.astype(str).to_numpy(dtype=object)
        elif col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            dtypes[name] = {"kind": "object"}
            values = col.astype(str).to_numpy(dtype=object)
        else:
            dtypes[name] = {"kind": "numpy", "dtype": str(col.dtype)}
            values = col.to_numpy()
        variables[f"c{i}"] = ("row", values)
    return xr.Dataset(
        variables,
        attrs={
            "columns": json.dumps([str(c) for c in frame.columns]),
            "dtypes": json.dumps(dtypes),
        },
    )


def _dataset_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    columns = json.loads(ds.attrs["columns"])
    dtypes = json.loads(ds.attrs["dtypes"])
    data = {}
    for i, name in enumerate(columns):
        values = ds[f"c{i}"].values
        info = dtypes[name]
        if info["kind"] == "category":
            cats = pd.Index(info["categories"])
            if info.get("categories_dtype", "object") not in ("object", "str", "string"):
                cats = cats.astype(info["categories_dtype"])
                values = pd.Series(values.astype(str)).astype(info["categories_dtype"])
            data[name] = pd.Categorical(values, categories=cats, ordered=info["ordered"])
        elif info["kind"] == "object":
            data[name] = pd.Series(values.astype(str), dtype=object)
        else:
            data[name] = values.astype(info["dtype"])
    return pd.DataFrame(data)


# -- public -------------------------------------------------------------------------------------
def save_fit(fit, path: str | os.PathLike) -> None:
    """Write a :class:`~lmmformula.Fit` to ``path`` (netCDF-4)."""
    from lmmformula import __version__

    model = fit.model
    spec = model.spec()
    spec["priors"] = _encode_prior(model.user_priors)
    spec["bambi_kwargs"] = _jsonable({k: v for k, v in model.bambi_kwargs.items() if _is_plain(v)})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lmmformula_version": __version__,
        "model": spec,
        "sampler": fit.sampler,
        "settings": _jsonable(fit.settings),
        "timings": _jsonable(fit.timings),
    }
    groups: dict[str, xr.Dataset] = {}
    for name, child in fit.idata.children.items():
        ds = child.to_dataset()
        ds = ds.assign_attrs(_encode_attrs(dict(ds.attrs)))
        for var in ds.data_vars:
            ds[var].attrs = _encode_attrs(dict(ds[var].attrs))
            if ds[var].dtype == object:  # e.g. nutpie's divergence_message: str or None
                ds[var] = _encode_objects(ds[var])
        groups[name] = ds
    groups[DATA_GROUP] = _frame_to_dataset(model.data)
    root = xr.Dataset(attrs={"lmmformula": json.dumps(meta)})
    tree = xr.DataTree.from_dict({"/": root, **groups})
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tree.to_netcdf(tmp, engine=_ENGINE)
    os.replace(tmp, path)


def _is_plain(value: Any) -> bool:
    try:
        json.dumps(_jsonable(value))
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class StoredFit:
    """What a file written by :func:`save_fit` holds: the model's specification (its priors
    decoded), the rows it was fitted on, the ArviZ groups and the sampler's record."""

    spec: dict
    priors: Any
    data: pd.DataFrame
    idata: xr.DataTree
    sampler: str
    settings: dict | None
    timings: dict | None


def read_fit(path: str | os.PathLike) -> StoredFit:
    """Read a file written by :meth:`Fit.save`, without building anything
    (:func:`lmmformula.load_fit` rebuilds the model and the fit from it).

    Raises
    ------
    FitError
        When the file is missing, truncated, or not an lmmformula fit.
    """
    path = Path(path)
    if not path.exists():
        raise FitError(f"no such file: {str(path)!r}")
    try:
        tree = xr.open_datatree(path, engine=_ENGINE).load()
    except Exception as exc:
        raise FitError(
            f"{str(path)!r} is not a readable lmmformula fit (truncated or not netCDF-4): {exc}"
        ) from exc
    raw = tree.attrs.get("lmmformula")
    if raw is None or DATA_GROUP not in tree.children:
        raise FitError(
            f"{str(path)!r} is a netCDF file but not an lmmformula fit "
            "(it lacks the model specification); was it written by Fit.save()?"
        )
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise FitError(
            f"{str(path)!r} has a damaged model specification (not JSON: {exc}); "
            "was it written by Fit.save()?"
        ) from exc
    if not isinstance(meta, dict):
        meta = {}
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise FitError(
            f"{str(path)!r} has format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}; this lmmformula reads {FORMAT!r} up to "
            f"version {FORMAT_VERSION}."
        )
    try:
        data = _dataset_to_frame(tree[DATA_GROUP].to_dataset())
        spec = dict(meta["model"])
        priors = _decode_prior(spec.pop("priors", None))
        sampler = meta["sampler"]
    except (KeyError, TypeError, ValueError, LmmFormulaError) as exc:
        raise FitError(
            f"{str(path)!r} holds an lmmformula fit whose model cannot be rebuilt "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    groups = {}
    for name, child in tree.children.items():
        if name == DATA_GROUP:
            continue
        ds = child.to_dataset()
        ds = ds.assign_attrs(_decode_attrs(dict(ds.attrs)))
        for var in ds.data_vars:
            ds[var].attrs = _decode_attrs(dict(ds[var].attrs))
            if _OBJECTS_ATTR in ds[var].attrs:
                ds[var] = _decode_objects(ds[var])
        for coord in ds.coords:
            if ds[coord].dtype.kind == "U":
                ds = ds.assign_coords({coord: ds[coord].values.astype(object)})
        groups[name] = ds
    return StoredFit(
        spec=spec,
        priors=priors,
        data=data,
        idata=xr.DataTree.from_dict(groups),
        sampler=sampler,
        settings=meta.get("settings"),
        timings=meta.get("timings"),
    )
