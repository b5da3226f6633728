"""Where the real MPV/VITON sample files are (../shared/real-samples beside the checkout).

Set MGVTON_REAL_SAMPLES to another location. Tests that read them are skipped when the files
are absent, unless MGVTON_REQUIRE_REAL_SAMPLES is set (CI sets it), where they fail.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("MGVTON_REAL_SAMPLES",
                           Path(__file__).resolve().parents[2] / "shared" / "real-samples"))
JDAI = ROOT / "mpv_jdai" / "dataset"
VITON = ROOT / "viton_cpvton" / "data"
APP = ROOT / "viton_app_variant" / "data" / "test"

needs_real_samples = pytest.mark.skipif(
    not ROOT.is_dir() and not os.environ.get("MGVTON_REQUIRE_REAL_SAMPLES"),
    reason=f"real sample files not found at {ROOT} (set MGVTON_REAL_SAMPLES)")
