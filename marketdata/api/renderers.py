"""CSV for `Accept: text/csv` (or `?format=csv`): spreadsheet and pandas users' format."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer


def _flatten(item: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class CSVRenderer(BaseRenderer):
    """Rows come from the view's `csv_rows(data)`, or from `data["data"]` flattened."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        view = (renderer_context or {}).get("view")
        if view is not None and hasattr(view, "csv_rows"):
            header, rows = view.csv_rows(data)
        else:
            items = data["data"] if isinstance(data, dict) and "data" in data else [data]
            flat = [_flatten(item) for item in items]
            header = list(flat[0]) if flat else []
            rows = ([row.get(column) for column in header] for row in flat)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue().encode(self.charset)
