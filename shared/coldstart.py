"""A function's cold start: its modules are imported with the cyclic garbage collector paused.

Importing FastAPI, SQLAlchemy, pydantic and a function's routes builds ~190,000 objects, and the
collector, which runs every 700 new objects, walks them again and again (a full collection walks all of
them): 0.1-0.3 s of the chat function's ~1.1 s of imports on 2 cores of a Xeon. A function's app module
calls pause() before its other imports and resume() once its app is built, which freezes what the
imports made (gc.freeze: no later collection walks those objects again, so a collection while serving
does not stall on them) and turns the collector back on. An import that fails in between leaves the
collector off in that process, which then has no app to serve.
"""

import gc

# one per pause() not yet resumed: a pause made while another is in force (an app module imported during
# another's import) leaves the collector off until the outer resume(). The local router imports the three
# app modules one after another, each pausing and resuming on its own.
_was_enabled: list[bool] = []


def pause() -> None:
    """Stop cyclic collection until resume() (reference counting frees objects as usual meanwhile)."""
    _was_enabled.append(gc.isenabled())
    gc.disable()


def resume() -> None:
    """Freeze every object made so far into the permanent generation, and collect again as before
    pause() (when it was on then)."""
    gc.freeze()
    if _was_enabled.pop():
        gc.enable()
