"""The suite's own layout: tests/unit, tests/functional and tests/e2e have no __init__.py, so pytest imports each
test module by its basename. Two modules with one basename are a collection error that silently drops the second
module's tests from the run (a CI run once lost tests/functional/test_settle.py that way)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own():
    # GIVEN every test module of the suite
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        by_name[path.name].append(str(path.relative_to(TESTS)))
    # THEN no basename is shared
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}
    assert len(by_name) > 50  # the walk found the suite
