from __future__ import annotations

import re
from pathlib import Path

import playwright

from pipeline.browser import PLAYWRIGHT_DISABLED_FEATURES, launch_args
from pipeline.config import Settings


def test_our_disable_features_switch_keeps_playwrights_own_list() -> None:
    """Chromium keeps only the last --disable-features; ours must repeat Playwright's."""
    bundle = (Path(playwright.__file__).parent / "driver" / "package" / "lib" /
              "coreBundle.js").read_text()
    block = re.search(r"disabledFeatures = \[(.*?)\]\.filter", bundle, re.S)
    assert block, "Playwright's disabledFeatures list not found in its driver"
    code = "\n".join(line.split("//")[0] for line in block.group(1).splitlines())
    assert set(re.findall(r'"([^"]+)"', code)) == set(PLAYWRIGHT_DISABLED_FEATURES)

    switches = [a for a in launch_args(Settings()) if a.startswith("--disable-features=")]
    assert len(switches) == 1
    disabled = switches[0].split("=", 1)[1].split(",")
    assert set(PLAYWRIGHT_DISABLED_FEATURES) < set(disabled)
    assert "WebUIOmniboxPopup" in disabled
