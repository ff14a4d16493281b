"""shared/coldstart.py: a function's modules are imported with the cyclic collector paused, and the
collector is back on, with the imports' objects frozen, once the app is built."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import coldstart

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector():
    """The test process's collector as it was, whatever a test leaves (frozen objects are let go too)."""
    was = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_pause_stops_collection_and_resume_freezes_and_restarts_it(collector):
    gc.enable()
    coldstart.pause()
    assert not gc.isenabled()
    made = [[] for _ in range(1000)]  # objects made while paused
    coldstart.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made)


def test_resume_leaves_a_collector_that_was_off_off(collector):
    gc.disable()
    coldstart.pause()
    coldstart.resume()
    assert not gc.isenabled()


def test_nested_pauses_turn_it_back_on_only_at_the_outer_resume(collector):
    """The local router imports the three functions' app modules, each pausing and resuming on its own."""
    gc.enable()
    coldstart.pause()
    coldstart.pause()
    coldstart.resume()
    assert not gc.isenabled()
    coldstart.resume()
    assert gc.isenabled()


@pytest.mark.parametrize("function", ["auth", "conversations", "chat"])
def test_an_imported_app_module_leaves_the_collector_on_with_its_imports_frozen(function, tmp_path):
    """In a fresh interpreter, as a cold start imports it: nothing collected during the import, and the
    collector on afterwards with the import's objects frozen (tens of thousands of them)."""
    code = (
        f"import gc; import functions.{function}.app; "
        "print(gc.isenabled(), gc.get_freeze_count(), gc.get_stats()[2]['collections'])"
    )
    env = {
        **os.environ,
        "SLM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'slm.db'}",
        "SLM_CHAT_ENGINE": "torch",  # no model preload thread in this check
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    enabled, frozen, full_collections = out.stdout.split()
    assert enabled == "True"
    assert int(frozen) > 20_000
    assert full_collections == "0"
