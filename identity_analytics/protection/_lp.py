"""Small helpers around HiGHS (highspy) shared by the protection code."""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["INF", "OPTIMAL", "new_highs", "pass_csc", "pass_lp"]

INF = float(highspy.kHighsInf)
#: model status of a solved LP (compare with ``h.getModelStatus()``)
OPTIMAL: Any = highspy.HighsModelStatus.kOptimal
_COLWISE = int(highspy.MatrixFormat.kColwise)
_MINIMIZE = int(highspy.ObjSense.kMinimize)


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
    pass_csc(
        h, cost, col_lower, col_upper, (csc.indptr, csc.indices, csc.data, int(csc.shape[0])),
        row_lower, row_upper,
    )


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
    number of rows), avoiding scipy overhead in hot loops (flat ``passModel``: no
    intermediate ``HighsLp`` object)."""
    indptr, indices, data, n_rows = csc
    f64 = np.float64
    n_cols = int(cost.size)
    status = h.passModel(
        n_cols, int(n_rows), len(indices), _COLWISE, _MINIMIZE, 0.0,
        np.ascontiguousarray(cost, dtype=f64), np.ascontiguousarray(col_lower, dtype=f64),
        np.ascontiguousarray(col_upper, dtype=f64), np.ascontiguousarray(row_lower, dtype=f64),
        np.ascontiguousarray(row_upper, dtype=f64),
        np.ascontiguousarray(indptr, dtype=np.int32), np.ascontiguousarray(indices, dtype=np.int32),
        np.ascontiguousarray(data, dtype=f64), np.zeros(n_cols, dtype=np.int32),
    )
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the LP")
