"""The presets (engine.presets)."""
from __future__ import annotations

from fastapi import APIRouter

from engine import preset_info, preset_names

router = APIRouter(prefix="/api/presets", tags=["presets"])


@router.get("", summary="Every preset: name, title, description, reference, target, config")
async def list_presets():
    return {"presets": [preset_info(n) for n in preset_names()]}
