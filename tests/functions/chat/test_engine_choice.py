"""SLM_CHAT_ENGINE: which engine serves which checkpoint."""

import pytest

from functions.chat.service import choose_engine

INT8 = {"quantization": {"scheme": "int8 per-row fp16 scale"}}
FP32 = {"quantization": None}


def test_auto_serves_int8_on_onnx_runtime_and_fp32_on_torch() -> None:
    assert choose_engine("auto", INT8) == "onnx"  # onnxruntime is in the chat function's requirements
    assert choose_engine("auto", FP32) == "torch"
    assert choose_engine("torch", INT8) == "torch"


def test_onnx_refuses_an_fp32_checkpoint_with_a_reason() -> None:
    with pytest.raises(ValueError, match="int8"):
        choose_engine("onnx", FP32)
