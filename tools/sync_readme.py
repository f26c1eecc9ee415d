"""Copy generated tables into README.md between `<!-- BEGIN path -->` and `<!-- END path -->`.

The tables themselves are produced by `irctl compare` and `irctl benchmark --markdown`; this
script only pastes them, so README numbers are never typed by hand (tests/test_readme.py checks
that README and the files agree).

    python tools/sync_readme.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- BEGIN (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END (?P=path) -->)", re.S)


def sync(readme: Path) -> str:
    root = readme.parent

    def fill(match: re.Match[str]) -> str:
        path = Path(match["path"])
        text = (root / path).read_text()
        if path.suffix != ".md":  # CSV and other text: shown verbatim in a fenced block
            text = f"```{path.suffix.lstrip('.') or 'text'}\n{text}```\n"
        return f"{match.group(1)}{text}{match.group(4)}"

    return BLOCK.sub(fill, readme.read_text())


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "README.md"
    updated = sync(path)
    path.write_text(updated)
    sys.stderr.write(f"updated {path}\n")
