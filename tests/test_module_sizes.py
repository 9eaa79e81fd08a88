"""The house keeps its modules small: a module of ``src/`` past 400 lines is split along
the seams its own comments name (DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import shoal

LIMIT = 400


def test_no_module_in_src_is_over_400_lines() -> None:
    root = Path(shoal.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 50  # (the package itself, not an empty folder)
    too_long = {
        str(path.relative_to(root)): lines
        for path in modules
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert too_long == {}
