"""``GET /api/v1/openapi.yaml``: the API described (``docs/openapi.yaml``), for clients and tools."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from .errors import ApiError

bp = Blueprint("openapi", __name__)
#: the document, kept with the other documents of a source checkout (how the gateway is deployed)
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@bp.get("/api/v1/openapi.yaml")
def document() -> Response:
    try:
        text = DOCUMENT.read_text(encoding="utf-8")
    except OSError:
        raise ApiError(404, "not_found", "the API description is not installed here") from None
    return Response(text, mimetype="application/yaml", headers={"Cache-Control": "no-cache"})
