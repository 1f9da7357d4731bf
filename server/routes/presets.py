"""The presets (engine.presets)."""
from __future__ import annotations

from fastapi import APIRouter

from engine import preset_info, preset_names
from engine.bsde import BSDE_PRESETS, bsde_preset_info

router = APIRouter(prefix="/api/presets", tags=["presets"])


@router.get("", summary="Every preset: name, title, description, reference, target, config "
                        "(the Deep BSDE ones have task \"bsde\" and a u0 target)")
async def list_presets():
    return {"presets": [preset_info(n) for n in preset_names()]
            + [bsde_preset_info(n) for n in BSDE_PRESETS]}
