"""A torch-free serving engine: the int8 checkpoint run by ONNX Runtime, with the Engine API.

`import torch` alone costs a serving process ~190 MB resident; ONNX Runtime ~45 MB. This module
imports neither torch nor anything that does: it reads the int8 checkpoint with numpy, writes the
GPT as one ONNX graph in memory (no file to build or ship), and runs it with a KV cache of slots,
exactly as model/engine.py does:

- every matrix is the checkpoint's own int8 numbers and fp16 row scales, multiplied by ONNX
  Runtime's `DynamicQuantizeMatMul` (activations quantized per tensor on the fly, like fbgemm's);
- attention is `GroupQueryAttention` with rotary positions, writing each new key and value into
  the slot cache in place (the past and present buffers are one), each row at its own length;
- the torch Engine stays the reference: tests/model/test_ort_engine.py checks the same greedy
  tokens and logits within a stated tolerance on fixed prompts.

    engine = OrtEngine.from_checkpoint("model/checkpoints/default")
    logits = engine.prefill(0, ids)          # (V,) numpy
    logits = engine.decode([0], [token])     # (1, V)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import ModelProto, TensorProto, helper, numpy_helper
from safetensors import SafetensorError
from safetensors.numpy import load_file

from model.config import INT8_SCHEME, WEIGHTS, CheckpointError, read_config
from model.runtime import zeroed_pages
from model.sampling import Slots
from model.tokenizer import EOS_ID

MS = "com.microsoft"
MATMUL = "dq"  # the int8 kernel (see _linear); bench/decode.py measures both


@functools.cache
def signed_weights_exact() -> bool:
    """Whether this CPU multiplies uint8 activations by int8 weights exactly: x86 with VNNI (vpdpbusd sums
    into int32). Without it (AVX2, AVX-512 without VNNI) ONNX Runtime's u8s8 kernel adds pairs of
    products in int16 with saturation (vpmaddubsw: 255 * 127 * 2 > 32767), which moved logits by up to
    4 here; there the weights go in as uint8 (q + 128, zero point 128), the u8u8 kernel, exact. Other
    CPUs (ARM) take uint8 too."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


F32 = TensorProto.FLOAT


class _Graph:
    """Nodes, weights and unique names for one ONNX graph. Weights go straight into the model's
    initializers, one tensor at a time: the weights are never held twice over in protobufs."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.model = ModelProto()
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", outputs: int = 1, **attrs) -> Any:
        domain = attrs.pop("domain", "")
        names = [self.name(hint or op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, domain=domain, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


def _rms_norm(g: _Graph, x: str, weight: np.ndarray | None, eps: float) -> str:
    """x / sqrt(mean(x²) + eps) over the last axis (times weight): nn.RMSNorm / F.rms_norm."""
    mean = g.op("ReduceMean", [g.op("Mul", [x, x]), g.const(np.array([-1], np.int64), "axis")], keepdims=1)
    rms = g.op("Sqrt", [g.op("Add", [mean, g.const(np.array(eps, np.float32), "eps")])])
    y = g.op("Div", [x, rms])
    return y if weight is None else g.op("Mul", [y, g.const(weight.astype(np.float32), "gain")])


def _linear(g: _Graph, x: str, w: dict[str, np.ndarray], name: str, matmul: str) -> str:
    """x @ (q * scale).T for the stored int8 q (out, in) and fp16 scale (out,), in one of two kernels
    on the same numbers: "dq", DynamicQuantizeMatMul (activations quantized per tensor on the fly,
    like fbgemm; weights int8 or uint8, see signed_weights_exact), or "nbits", MatMulNBits with 8-bit weights in one block per row (q + 128 as
    unsigned) and int8 compute (accuracy_level 4: each activation row quantized on its own)."""
    q = w.pop(f"{name}.weight")
    scale = w.pop(f"{name}.weight_scale").astype(np.float32)
    n, k = q.shape
    if matmul == "nbits":
        unsigned = (q.astype(np.int16) + 128).astype(np.uint8).reshape(n, 1, k)
        inputs = [x, g.const(unsigned, name + ".q"), g.const(scale, name + ".scale")]
        zero = g.const(np.full(n, 128, np.uint8), name + ".zero")
        attrs = {"K": k, "N": n, "bits": 8, "block_size": k, "accuracy_level": 4}
        return g.op("MatMulNBits", [*inputs, zero], name, domain=MS, **attrs)
    if signed_weights_exact():
        b, b_zero = q.T, np.zeros(n, np.int8)
    else:  # the same numbers, unsigned (see signed_weights_exact)
        b, b_zero = (q.T.astype(np.int16) + 128).astype(np.uint8), np.full(n, 128, np.uint8)
    inputs = [x, g.const(b, name + ".q"), g.const(scale, name + ".scale"), g.const(b_zero, name + ".zero")]
    return g.op("DynamicQuantizeMatMul", inputs, name, domain=MS)


def build_model(weights: dict[str, np.ndarray], config: dict[str, Any], matmul: str = MATMUL) -> bytes:
    """The serialized ONNX model of an int8 checkpoint of the default architecture (RMSNorm, rotary,
    QK-norm, ReLU², untied head). Inputs: ids (B, S) int64; seqlens (B,) int32 = each row's length
    after this step minus one; total (scalar int32) = the longest row's length after this step; per
    layer past_key_i / past_value_i (B, H, block, D), updated in place when bound as the outputs
    present_key_i / present_value_i. Output: logits (B, V) at each row's last position.
    `weights` is emptied as it is read (each array is freed once it is in the graph)."""
    c = config
    if (c.get("norm"), c.get("pos"), c.get("mlp"), c.get("qk_norm")) != ("rms", "rope", "relu2", True):
        raise ValueError("the ONNX engine runs the default architecture only (rms, rope, relu2, qk_norm)")
    n_layer, n_head, n_embd, block = c["n_layer"], c["n_head"], c["n_embd"], c["block_size"]
    head, eps = n_embd // n_head, float(np.finfo(np.float32).eps)
    g = _Graph()
    # embeddings: int8 rows times their scales
    ids = "ids"
    table = g.const(weights.pop("transformer.wte.weight"), "wte.q")
    table_scale = g.const(
        weights.pop("transformer.wte.weight_scale").astype(np.float32)[:, None], "wte.scale"
    )
    x = g.op(
        "Mul", [g.op("Cast", [g.op("Gather", [table, ids])], to=F32), g.op("Gather", [table_scale, ids])]
    )
    # rotary tables for every position (GroupQueryAttention reads them at each row's positions)
    inv_freq = c.get("rope_base", 10000.0) ** -(np.arange(0, head, 2, dtype=np.float32) / head)
    angles = np.arange(block, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None, :]
    cos, sin = g.const(np.cos(angles), "cos"), g.const(np.sin(angles), "sin")
    per_head = g.const(np.array([0, 0, n_head, head], np.int64), "per_head")
    merged = g.const(np.array([0, 0, n_embd], np.int64), "merged")
    split = g.const(np.array([n_embd] * 3, np.int64), "split")
    outputs = []
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        h = _rms_norm(g, x, weights.pop(f"{p}.ln_1.weight"), eps)
        q, k, v = g.op(
            "Split", [_linear(g, h, weights, f"{p}.attn.c_attn", matmul), split], "qkv", outputs=3, axis=2
        )
        q, k = (  # QK-norm: each head's vector to unit RMS
            g.op("Reshape", [_rms_norm(g, g.op("Reshape", [t, per_head]), None, eps), merged]) for t in (q, k)
        )
        attn, present_k, present_v = g.op(
            "GroupQueryAttention",
            [q, k, v, f"past_key_{i}", f"past_value_{i}", "seqlens", "total", cos, sin],
            "attn",
            outputs=3,
            domain=MS,
            num_heads=n_head,
            kv_num_heads=n_head,
            do_rotary=1,
            rotary_interleaved=0,
        )
        g.nodes[-1].output[1:] = [f"present_key_{i}", f"present_value_{i}"]
        outputs += [f"present_key_{i}", f"present_value_{i}"]
        x = g.op("Add", [x, _linear(g, attn, weights, f"{p}.attn.c_proj", matmul)])
        h = g.op(
            "Relu",
            [
                _linear(
                    g, _rms_norm(g, x, weights.pop(f"{p}.ln_2.weight"), eps), weights, f"{p}.mlp.c_fc", matmul
                )
            ],
        )
        x = g.op("Add", [x, _linear(g, g.op("Mul", [h, h]), weights, f"{p}.mlp.c_proj", matmul)])
    # the head on each row's last position only
    last = g.op(
        "Slice",
        [
            x,
            g.const(np.array([-1], np.int64), "m1"),
            g.const(np.array([2**62], np.int64), "end"),
            g.const(np.array([1], np.int64), "ax1"),
        ],
    )
    last = g.op("Squeeze", [last, g.const(np.array([1], np.int64), "ax1")])
    _linear(g, _rms_norm(g, last, weights.pop("transformer.ln_f.weight"), eps), weights, "lm_head", matmul)
    g.nodes[-1].output[0] = "logits"
    kv_shape = ["batch", n_head, block, head]
    inputs = [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        *[
            helper.make_tensor_value_info(f"past_{kind}_{i}", F32, kv_shape)
            for i in range(n_layer)
            for kind in ("key", "value")
        ],
        helper.make_tensor_value_info("seqlens", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total", TensorProto.INT32, []),
    ]
    if weights:
        raise ValueError(f"the checkpoint has weights this graph does not use: {sorted(weights)[:4]}")
    model = g.model
    model.graph.name = "slm"
    model.graph.node.extend(g.nodes)
    model.graph.input.extend(inputs)
    model.graph.output.extend(
        [helper.make_tensor_value_info("logits", F32, ["batch", c["vocab_size"]])]
        + [helper.make_tensor_value_info(name, F32, kv_shape) for name in outputs]
    )
    model.opset_import.extend([helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)])
    model.ir_version = 10
    return model.SerializeToString()


def _give_back_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; elsewhere nothing): building
    the session frees ~70 MB in pieces that malloc would otherwise keep for the process's life."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class OrtEngine(Slots):
    """The Engine API (prefill, decode, position, release, generate) on ONNX Runtime: a KV cache of
    (n_layer, 2, max_batch, n_head, block_size, head_dim) fp32 in numpy, written in place."""

    def __init__(
        self, weights: dict[str, np.ndarray], config: dict[str, Any], max_batch: int = 16,
        threads: int = 2, eos_id: int = EOS_ID, matmul: str = MATMUL,
    ) -> None:  # fmt: skip
        super().__init__(max_batch, config["block_size"], eos_id)
        self.config, self.n_layer = config, config["n_layer"]
        n_head = config["n_head"]
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # 2 cores, shared
        # no arena: a growing arena keeps its high-water mark; plain malloc gives big buffers back
        options.enable_cpu_mem_arena = options.enable_mem_pattern = False
        self.session = ort.InferenceSession(
            build_model(weights, config, matmul), options, providers=["CPUExecutionProvider"]
        )
        _give_back_freed_memory()  # the graph's bytes and the numpy weights, copied into the session
        shape = (self.n_layer, 2, max_batch, n_head, self.block_size, config["n_embd"] // n_head)
        nbytes = int(np.prod(shape)) * 4
        self.cache = np.frombuffer(zeroed_pages(nbytes), np.float32).reshape(shape)  # committed as written
        self._bindings: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}

    @classmethod
    def from_checkpoint(cls, directory: str | Path, **kwargs: Any) -> OrtEngine:
        """The engine of an int8 checkpoint folder (CheckpointError for anything else)."""
        directory = Path(directory)
        meta = read_config(directory)
        if (meta.get("quantization") or {}).get("scheme") != INT8_SCHEME:
            raise CheckpointError(
                f"{directory}: the ONNX engine serves int8 checkpoints (python -m model.export)"
            )
        try:
            weights = load_file(str(directory / WEIGHTS))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} is corrupt ({e})") from e
        return cls(weights, meta["model"], **kwargs)

    def _binding(self, first: int, count: int) -> tuple[Any, np.ndarray]:
        """The IO binding of the slots first..first+count-1 (their cache rows bound in place as both
        past and present) and its logits buffer: made once per span, reused by every step after."""
        key = (first, count)
        if key not in self._bindings:
            binding = self.session.io_binding()
            logits = np.empty((count, self.config["vocab_size"]), np.float32)  # written in place
            binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
            for i in range(self.n_layer):
                for j, kind in enumerate(("key", "value")):
                    rows = self.cache[i, j, first : first + count]  # contiguous: slots lead the layout
                    value = ort.OrtValue.ortvalue_from_numpy(rows)
                    binding.bind_ortvalue_input(f"past_{kind}_{i}", value)
                    binding.bind_ortvalue_output(f"present_{kind}_{i}", value)
            self._bindings[key] = (binding, logits)
        return self._bindings[key]

    def _run(self, first: int, count: int, ids: np.ndarray, lengths: list[int]) -> np.ndarray:
        """One forward pass over the slots first..first+count-1; a copy of the logits (B, V)."""
        binding, logits = self._binding(first, count)
        binding.bind_cpu_input("ids", ids)
        binding.bind_cpu_input("seqlens", np.array([n - 1 for n in lengths], np.int32))
        binding.bind_cpu_input("total", np.array(max(lengths), np.int32))
        self.session.run_with_iobinding(binding)
        return logits.copy()  # the buffer is the next step's (copy_outputs_to_cpu would copy the caches too)

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        """Fill the slot's cache with `ids` (from position 0); returns the last position's logits (V,)."""
        self._check_prefill(slot, ids)
        logits = self._run(slot, 1, np.array([ids], np.int64), [len(ids)])
        self.positions[slot] = len(ids)
        return logits[0]

    def decode(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        """One batched step: tokens[i] to slots[i] at that slot's position; returns (len(slots), V).
        The pass covers the span of slots from the lowest to the highest asked for; a slot in
        between that was not asked for is fed a dummy token whose key lands one past its length, where
        its own next token overwrites it: its stream is unchanged (a full slot, which cannot decode
        again, has its last key overwritten instead; the scheduler releases such a slot)."""
        self._check_decode(slots, tokens)
        first, last = min(slots), max(slots)
        feed = dict(zip(slots, tokens, strict=True))
        span = range(first, last + 1)
        # an empty slot writes its dummy key at 0, which its prefill rewrites
        ids = np.array([[feed.get(s, 0)] for s in span], np.int64)
        lengths = [
            min(self.positions[s] + 1, self.block_size) for s in span
        ]  # asked-for slots are never full
        logits = self._run(first, len(span), ids, lengths)
        for s in slots:
            self.positions[s] += 1
        return logits[[s - first for s in slots]]
