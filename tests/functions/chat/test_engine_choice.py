"""SLM_CHAT_ENGINE: which engine serves which checkpoint, and its load begun as the app is imported."""

import logging
import os
import subprocess
import sys

import pytest

from functions.chat import preload
from functions.chat.preload import choose_engine
from model.config import DEFAULT_CHECKPOINT
from model.ort_engine import OrtEngine

INT8 = {"quantization": {"scheme": "int8 per-row fp16 scale"}}
FP32 = {"quantization": None}


def test_auto_serves_int8_on_onnx_runtime_and_fp32_on_torch() -> None:
    assert choose_engine("auto", INT8) == "onnx"  # onnxruntime is in the chat function's requirements
    assert choose_engine("auto", FP32) == "torch"
    assert choose_engine("torch", INT8) == "torch"


def test_onnx_refuses_an_fp32_checkpoint_with_a_reason() -> None:
    with pytest.raises(ValueError, match="int8"):
        choose_engine("onnx", FP32)


def test_a_preloaded_engine_is_handed_out_once_for_its_own_key() -> None:
    preload.start(DEFAULT_CHECKPOINT, 2, 1)
    preload.start(DEFAULT_CHECKPOINT, 2, 1)  # once per key
    assert preload.take(DEFAULT_CHECKPOINT, 4, 1) is None  # other slots: not this engine
    engine, tokenizer, words = preload.take(DEFAULT_CHECKPOINT, 2, 1)
    assert isinstance(engine, OrtEngine) and engine.max_batch == 2
    assert tokenizer.vocab_size == engine.config["vocab_size"]
    assert len(words.keys) == tokenizer.vocab_size  # the loop guard's table, built in the same thread
    assert preload.take(DEFAULT_CHECKPOINT, 2, 1) is None  # handed out once


def test_a_failed_preload_is_logged_and_leaves_the_load_to_the_service(tmp_path, caplog) -> None:
    preload.start(tmp_path, 2, 1)  # no checkpoint there
    with caplog.at_level(logging.WARNING, "slm.chat"):
        assert preload.take(tmp_path, 2, 1) is None
    assert "loading it again" in caplog.text


def test_importing_the_chat_app_starts_the_load_of_what_the_settings_name() -> None:
    """In a fresh process: functions/chat/early.py, imported first by the app, starts the preload; the
    service's model then comes from it (nothing is left waiting)."""
    code = (
        "import asyncio, functions.chat.app\n"
        "from functions.chat import preload\n"
        "print(sorted(str(key[0]) for key in preload._loading))\n"
        "from functions.chat.service import ChatModel\n"
        "from shared.settings import get_settings\n"
        "model = ChatModel(get_settings().model_dir)\n"
        "print(len(preload._loading), model.engine_name)\n"
    )
    env = {**os.environ, "SLM_MODEL_DIR": str(DEFAULT_CHECKPOINT), "SLM_CHAT_ENGINE": "auto"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    started, left = out.stdout.splitlines()[-2:]
    assert started == repr([str(DEFAULT_CHECKPOINT)])
    assert left == "0 onnx"


def test_a_process_exiting_while_the_model_loads_waits_for_the_load(tmp_path) -> None:
    """A process that imported the app and ends at once ends while the preload is inside ONNX Runtime;
    torn down under it, the runtime aborted the process (seen once: SIGABRT). The exit waits for the
    load: here a load that takes 0.5 s still finishes, after the main thread is done."""
    marker = tmp_path / "loaded"
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from functions.chat import preload\n"
        "def slow(key, future):\n"
        "    time.sleep(0.5)\n"
        f"    Path({str(marker)!r}).write_text('done')\n"
        "preload._load = slow\n"
        "preload.start(Path('checkpoint'), 1, 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert marker.read_text() == "done"
