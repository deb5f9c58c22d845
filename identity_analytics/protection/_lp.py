"""Small helpers around HiGHS (highspy) shared by the protection code."""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["INF", "new_highs", "pass_csc", "pass_lp"]

INF = float(highspy.kHighsInf)


def new_highs() -> Any:
    """A silent HiGHS instance (the core class: the wrapper prints a banner on first use)."""
    core = getattr(highspy, "_core", None)
    cls = getattr(core, "_Highs", None) if core is not None else None
    h = cls() if cls is not None else highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    return h


def pass_lp(
    h: Any,
    cost: npt.NDArray[np.float64],
    col_lower: npt.NDArray[np.float64],
    col_upper: npt.NDArray[np.float64],
    matrix: sp.spmatrix,
    row_lower: npt.NDArray[np.float64],
    row_upper: npt.NDArray[np.float64],
) -> None:
    """Load a minimisation LP ``row_lower <= matrix @ x <= row_upper`` into ``h``."""
    csc = sp.csc_matrix(matrix)
    csc.sort_indices()
    lp = highspy.HighsLp()
    lp.num_col_ = int(csc.shape[1])
    lp.num_row_ = int(csc.shape[0])
    lp.col_cost_ = np.ascontiguousarray(cost, dtype=np.float64)
    lp.col_lower_ = np.ascontiguousarray(col_lower, dtype=np.float64)
    lp.col_upper_ = np.ascontiguousarray(col_upper, dtype=np.float64)
    lp.row_lower_ = np.ascontiguousarray(row_lower, dtype=np.float64)
    lp.row_upper_ = np.ascontiguousarray(row_upper, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    h.passModel(lp)


def pass_csc(
    h: Any,
    cost: npt.NDArray[np.float64],
    col_lower: npt.NDArray[np.float64],
    col_upper: npt.NDArray[np.float64],
    csc: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], int],
    row_lower: npt.NDArray[np.float64],
    row_upper: npt.NDArray[np.float64],
) -> None:
    """Like :func:`pass_lp` with the matrix given as raw CSC arrays (indptr, indices, data,
    number of rows), avoiding scipy overhead in hot loops."""
    indptr, indices, data, n_rows = csc
    lp = highspy.HighsLp()
    lp.num_col_ = int(cost.size)
    lp.num_row_ = int(n_rows)
    lp.col_cost_ = np.ascontiguousarray(cost, dtype=np.float64)
    lp.col_lower_ = np.ascontiguousarray(col_lower, dtype=np.float64)
    lp.col_upper_ = np.ascontiguousarray(col_upper, dtype=np.float64)
    lp.row_lower_ = np.ascontiguousarray(row_lower, dtype=np.float64)
    lp.row_upper_ = np.ascontiguousarray(row_upper, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.ascontiguousarray(indptr, dtype=np.int32)
    lp.a_matrix_.index_ = np.ascontiguousarray(indices, dtype=np.int32)
    lp.a_matrix_.value_ = np.ascontiguousarray(data, dtype=np.float64)
    h.passModel(lp)
