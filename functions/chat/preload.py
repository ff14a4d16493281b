"""The chat function's cold start: its model starts loading when functions/chat/app.py is imported, in a
thread, before the web stack is. ONNX Runtime builds its sessions without holding the GIL, so the load runs
beside the ~0.5 s of importing FastAPI and SQLAlchemy instead of after it; service.ChatModel takes the
loaded engine when the settings still name the same checkpoint, batch and threads, and otherwise loads
its own (a failed preload is logged and changes nothing else). The loop guard's table of the vocabulary
(model.loops.WordTable) is built in the same thread, after the engine.
"""

import atexit
import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("slm.chat")
Key = tuple[Path, int, int]  # checkpoint folder, slots, threads


class Loaded(NamedTuple):
    engine: Any  # model.ort_engine.OrtEngine
    tokenizer: Any  # model.tokenizer.Tokenizer
    words: Any  # model.loops.WordTable


_loading: dict[Key, Future[Loaded]] = {}
_threads: list[threading.Thread] = []


@atexit.register
def _finish_loading() -> None:
    """A process that exits while a load is inside ONNX Runtime would be torn down under it (the runtime
    aborts): wait for the loads first (a fraction of a second)."""
    for thread in _threads:
        thread.join(timeout=60)


def load(directory: Path, max_batch: int, threads: int) -> Loaded:
    """The ONNX engine, the tokenizer and its WordTable of the checkpoint in `directory`, loaded now."""
    from model.config import TOKENIZER
    from model.loops import WordTable
    from model.ort_engine import OrtEngine
    from model.tokenizer import Tokenizer

    engine = OrtEngine.from_checkpoint(directory, max_batch=max_batch, threads=threads)
    tokenizer = Tokenizer.from_file(directory / TOKENIZER)
    return Loaded(engine, tokenizer, WordTable(tokenizer))


def _load(key: Key, future: Future[Loaded]) -> None:
    try:
        future.set_result(load(*key))
    except BaseException as exc:  # reported to whoever takes it; the service then loads on its own
        future.set_exception(exc)


def start(directory: Path, max_batch: int, threads: int) -> None:
    """Begin loading the ONNX engine and tokenizer of `directory` in a daemon thread (once per key)."""
    key = (directory, max_batch, threads)
    if key not in _loading:
        future: Future[Loaded] = Future()
        _loading[key] = future
        thread = threading.Thread(target=_load, args=(key, future), name="slm-preload", daemon=True)
        _threads.append(thread)
        thread.start()


def take(directory: Path, max_batch: int, threads: int) -> Loaded | None:
    """The preloaded engine, tokenizer and WordTable for this key, waiting for it if it is still loading;
    None when none was started for it or it failed. Each is handed out once."""
    future = _loading.pop((directory, max_batch, threads), None)
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        log.warning("the preloaded model could not be used: loading it again", exc_info=True)
        return None


def choose_engine(setting: str, config: dict[str, Any]) -> str:
    """The engine, onnx or torch, for SLM_CHAT_ENGINE and a checkpoint's config.json ("auto": onnx for
    an int8 checkpoint when onnxruntime is installed, else torch)."""
    int8 = config.get("quantization") is not None
    if setting == "onnx" and not int8:
        raise ValueError("SLM_CHAT_ENGINE=onnx serves int8 checkpoints only (python -m model.export)")
    if setting != "auto":
        return setting
    if not int8:
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def start_from_settings() -> None:
    """start() for what the settings ask the chat function to serve, when that is the ONNX engine."""
    try:
        from model.config import read_config
        from model.runtime import cpu_budget
        from shared.settings import get_settings

        settings = get_settings()
        if choose_engine(settings.chat_engine, read_config(settings.model_dir)) == "onnx":
            start(settings.model_dir, settings.chat_max_batch, cpu_budget())
    except Exception:  # bad settings or checkpoint: the service reports them when it loads
        log.debug("no preload", exc_info=True)
