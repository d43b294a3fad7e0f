"""Names for the numpy array types the analytics modules pass between each other.

One place for them, so that a signature says what it holds (float prices, boolean masks)
rather than a bare ``np.ndarray`` of anything.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.intp]
