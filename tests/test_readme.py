"""README figures are pasted from files that `irctl compare` / `irctl benchmark` wrote."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _sync_module():
    spec = importlib.util.spec_from_file_location("sync_readme", REPO / "tools" / "sync_readme.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_generated_files() -> None:
    readme = REPO / "README.md"
    blocks = re.findall(r"<!-- BEGIN (\S+) -->", readme.read_text())
    assert {"results/denoise/table.md", "results/benchmark-cpu.md"} <= set(blocks)
    for block in blocks:
        assert (REPO / block).is_file(), f"README pastes {block}, which is missing"
    assert _sync_module().sync(readme) == readme.read_text(), "run: python tools/sync_readme.py"


def test_readme_quick_start_uses_bundled_examples() -> None:
    text = (REPO / "README.md").read_text()
    match = re.search(r"irctl restore --task denoise --src (\S+) --dst", text)
    assert match is not None
    assert sorted(p.suffix for p in (REPO / match.group(1)).iterdir()) == [".png"] * 3
