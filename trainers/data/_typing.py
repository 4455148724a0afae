"""Array and option types the loader's modules share, named once so their signatures agree."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

LengthPolicy = Literal["resample", "pad"]
ValSplit = Literal["stratified", "subject"]
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
SeriesArray = npt.NDArray[np.floating[Any]]
"""Series before standardisation: float64 where float32 would round the values read."""
Int64Array = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]
