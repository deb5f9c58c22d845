"""Small helpers around HiGHS (highspy) shared by the protection code."""

from __future__ import annotations

import os
import threading
from typing import Any

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["INF", "OPTIMAL", "new_highs", "pass_csc", "pass_lp", "run"]

INF = float(highspy.kHighsInf)
#: model status of a solved LP (compare with ``h.getModelStatus()``)
OPTIMAL: Any = highspy.HighsModelStatus.kOptimal
_COLWISE = int(highspy.MatrixFormat.kColwise)
_MINIMIZE = int(highspy.ObjSense.kMinimize)


_ERROR = highspy.HighsStatus.kError
_scheduler_lock = threading.Lock()
_scheduler_threads: list[int] = []  # the probed thread count, once known


def _instance() -> Any:
    core = getattr(highspy, "_core", None)
    cls = getattr(core, "_Highs", None) if core is not None else None
    h = cls() if cls is not None else highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    return h


def _probe_scheduler_threads() -> int:
    """The thread count of HiGHS's scheduler (one per process, made by the first solve).

    A solve whose ``threads`` option differs from it is refused, and with the default (0)
    every solve recounts the machine's cores through /sys, about a third of the time of a
    small warm re-solve. So the count is found once, by trial on a one-column LP. (HiGHS
    1.16 also reads the CPU topology from /sys on every run, for a log line, whatever the
    options: about 65 us of each solve, twice the fixed cost of a solve with 1.15.)
    """
    h = _instance()
    h.addVar(0.0, 1.0)
    h.run()  # creates the scheduler if no solve has yet
    for threads in range(1, max(os.cpu_count() or 1, 1) * 2 + 1):
        h.setOptionValue("threads", threads)
        if h.run() != _ERROR:
            return threads
    return 0


def _threads(refresh: bool = False) -> int:
    with _scheduler_lock:
        if refresh or not _scheduler_threads:
            _scheduler_threads[:] = [_probe_scheduler_threads()]
        return _scheduler_threads[0]


def new_highs() -> Any:
    """A silent HiGHS instance (the core class: the wrapper prints a banner on first use),
    set to the thread count of the process's HiGHS scheduler."""
    h = _instance()
    h.setOptionValue("threads", _threads())
    return h


def run(h: Any) -> None:
    """``h.run()``. Should another HiGHS user in the process have replaced the scheduler
    with one of another size, the solve is refused (leaving the previous status in place):
    the count is probed again and the solve repeated (``threads`` 0, HiGHS's own default, if
    it is refused again)."""
    if h.run() != _ERROR:
        return
    h.setOptionValue("threads", _threads(refresh=True))
    if h.run() != _ERROR:
        return
    h.setOptionValue("threads", 0)
    if h.run() == _ERROR:
        raise RuntimeError(f"HiGHS failed to solve the LP ({h.modelStatusToString(h.getModelStatus())})")


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
