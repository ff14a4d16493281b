"""A torch-free serving engine: the int8 checkpoint run by ONNX Runtime, with the Engine API.

`import torch` alone costs a serving process ~190 MB resident; ONNX Runtime ~30 MB. This module
imports neither torch nor anything that does: it writes the GPT as ONNX graphs from the int8
checkpoint's numbers, keeps them in a cache folder (built once, by a child process that imports the
onnx package, so the serving process never does: 0.6 s and 18 MB), and runs them with a KV cache of
slots, exactly as model/engine.py does:

- every matrix is the checkpoint's own int8 numbers and fp16 row scales, in one of two ONNX Runtime
  kernels: `MatMulNBits` (8 bits, each activation row quantized on its own) for passes of up to
  SMALL_PASS rows, where it reads the weights fastest, and `DynamicQuantizeMatMul` (activations
  quantized per tensor on the fly, like fbgemm's) for prefills and larger batches; one session per
  kernel, both writing the same cache and reading one copy of the embedding table;
- RMSNorm is one fused node, and each residual add rides with the norm after it;
- attention is `GroupQueryAttention` with rotary positions, writing each new key and value into
  the slot cache in place (the past and present buffers are one), each row at its own length;
- for the small passes, the pool's threads spin between the graph's nodes and stop when a pass returns;
- which passes are small is measured on the CPU when the graphs are built (measure_small_pass) and kept
  beside them, since the kernels' order differs between CPUs; where none is (MatMulNBits is not faster
  even for one row, as on AVX2 CPUs without VNNI), the engine holds the DynamicQuantizeMatMul session
  alone (~30 MB less);
- the torch Engine stays the reference: tests/model/test_ort_engine.py checks the same greedy
  tokens and logits within a stated tolerance on fixed prompts, for each kernel and for both.

    engine = OrtEngine.from_checkpoint("model/checkpoints/default")
    logits = engine.prefill(0, ids)          # (V,) numpy
    logits = engine.decode([0], [token])     # (1, V)
    python -m model.ort_engine --build model/checkpoints/default   # fill the cache ahead (images do)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from model.config import INT8_SCHEME, WEIGHTS, CheckpointError, read_config
from model.runtime import zeroed_pages
from model.sampling import Slots
from model.tokenizer import EOS_ID

log = logging.getLogger("slm.model")
MS = "com.microsoft"
KERNELS = ["dq", "nbits"]  # the two int8 matmuls (see _linear)
MATMUL = "auto"  # the int8 kernel by the size of each pass (see OrtEngine; _linear has both)
TRIM_AFTER = 64  # prompts this long are followed by a malloc_trim (0.6-2 ms; 8 full windows 305 -> 274 MB)
# passes of up to this many rows take MatMulNBits, unless this CPU measured otherwise (measure_small_pass:
# 3 on an AMD EPYC with AVX-512 VNNI, where bench/decode.py has it faster up to ~3 streams; 0-1 on one with
# AVX2 alone, where DynamicQuantizeMatMul is as fast for one row, ~20% faster for two and ~45% for three)
SMALL_PASS = 3
MEASURED_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)  # the pass sizes (rows) measure_small_pass times each kernel at
MEASURED_SLOTS = 4  # an engine of fewer slots leaves the measuring to a bigger one (the server's: 16)
MEASURED_PASSES = 12  # passes of each kernel at each size (medians; the kernels take turns)
# a timing taken while other work keeps the host this busy (1-minute load average per CPU) is used but
# not kept: a build or a training run beside a first start once left "0" on record for a CPU whose
# MatMulNBits is the faster kernel for one row (7.5 ms a pass against 3.1 on a quiet machine); a start
# that finds the host this busy already takes the default without timing (~0.3 s of its cold start)
BUSY_LOAD = 0.75
# prompts that arrive together share a prefill pass (prefill_passes): one pass instead of several costs
# their per-pass overhead once; these bound its padding and its intermediates' memory
PAD_ALLOWANCE = 32
PASS_POSITIONS = 512


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


F32 = 1  # onnx.TensorProto.FLOAT (onnx itself is imported only to build a graph: ~0.6 s and 18 MB)


class _Graph:
    """Nodes, weights and unique names for one ONNX graph. Weights go straight into the model's
    initializers, one tensor at a time: the weights are never held twice over in protobufs."""

    def __init__(self) -> None:
        from onnx import ModelProto

        self.nodes: list[Any] = []
        self.model = ModelProto()
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", outputs: int = 1, **attrs) -> Any:
        from onnx import helper

        domain = attrs.pop("domain", "")
        names = [self.name(hint or op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, domain=domain, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array: np.ndarray, hint: str, exact: bool = False) -> str:
        from onnx import numpy_helper

        name = hint if exact else self.name(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


SHARED_WEIGHTS = ("transformer.wte.weight", "transformer.wte.weight_scale")


def shared_initializers(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The initializers every kernel's graph reads as they are, by their names in the graph: the
    embedding table (int8 rows) and its fp32 row scales."""
    table, scale = (weights[name] for name in SHARED_WEIGHTS)
    return {"wte.q": np.ascontiguousarray(table), "wte.scale": scale.astype(np.float32)[:, None].copy()}


def _rms_norm(g: _Graph, x: str, weight: np.ndarray, eps: float) -> str:
    """x / sqrt(mean(x²) + eps) * weight over the last axis (nn.RMSNorm / F.rms_norm) in one fused node."""
    gain = g.const(weight.astype(np.float32), "gain")
    return g.op("SimplifiedLayerNormalization", [x, gain], "norm", axis=-1, epsilon=eps)


def _add_rms_norm(g: _Graph, x: str, y: str, weight: np.ndarray, eps: float) -> tuple[str, str]:
    """(rms_norm(x + y) * weight, x + y): the residual add and the next norm in one fused node."""
    gain = g.const(weight.astype(np.float32), "gain")
    normed, _, _, total = g.op(
        "SkipSimplifiedLayerNormalization", [y, x, gain], "addnorm", outputs=4, domain=MS, epsilon=eps
    )
    g.nodes[-1].output[1:3] = ["", ""]  # mean and inverse deviation: not computed
    return normed, total


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
    after this step minus one; total (scalar int32) = the longest row's length after this step;
    last_rows (B,) int64 = where each row's last token is among the pass's B x S positions (b * S + its
    index: a prompt shorter than S is right-padded); per layer past_key_i / past_value_i (B, H, block, D),
    updated in place when bound as the outputs present_key_i / present_value_i. Output: logits (B, V) at
    each row's last token.
    `weights` is emptied as it is read (each array is freed once it is in the graph)."""
    from onnx import TensorProto, helper

    c = config
    if (c.get("norm"), c.get("pos"), c.get("mlp"), c.get("qk_norm")) != ("rms", "rope", "relu2", True):
        raise ValueError("the ONNX engine runs the default architecture only (rms, rope, relu2, qk_norm)")
    n_layer, n_head, n_embd, block = c["n_layer"], c["n_head"], c["n_embd"], c["block_size"]
    head, eps = n_embd // n_head, float(np.finfo(np.float32).eps)
    g = _Graph()
    # embeddings: int8 rows times their scales
    ids = "ids"
    shared = shared_initializers(weights)
    for name in SHARED_WEIGHTS:
        weights.pop(name)
    table, table_scale = (g.const(array, name, exact=True) for name, array in shared.items())
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
    ones = np.ones(head, np.float32)  # QK-norm has no gain
    outputs: list[str] = []
    h = _rms_norm(g, x, weights.pop("transformer.h.0.ln_1.weight"), eps)
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        q, k, v = g.op(
            "Split", [_linear(g, h, weights, f"{p}.attn.c_attn", matmul), split], "qkv", outputs=3, axis=2
        )
        q, k = (  # QK-norm: each head's vector to unit RMS
            g.op("Reshape", [_rms_norm(g, g.op("Reshape", [t, per_head]), ones, eps), merged]) for t in (q, k)
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
        attn = _linear(g, attn, weights, f"{p}.attn.c_proj", matmul)
        h, x = _add_rms_norm(g, x, attn, weights.pop(f"{p}.ln_2.weight"), eps)
        h = g.op("Relu", [_linear(g, h, weights, f"{p}.mlp.c_fc", matmul)])
        mlp = _linear(g, g.op("Mul", [h, h]), weights, f"{p}.mlp.c_proj", matmul)
        # the next layer's first norm, or the final one, with this residual add
        gain = f"transformer.h.{i + 1}.ln_1.weight" if i + 1 < n_layer else "transformer.ln_f.weight"
        h, x = _add_rms_norm(g, x, mlp, weights.pop(gain), eps)
    # the head on each row's last token only (the final norm is per position: normed first, then picked):
    # last_rows[b] is that token's row in the pass's (batch x seq) positions, so right-padded prompts of
    # different lengths share one pass
    flat = g.op("Reshape", [h, g.const(np.array([-1, n_embd], np.int64), "rows")])
    last = g.op("Gather", [flat, "last_rows"], axis=0)
    _linear(g, last, weights, "lm_head", matmul)
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
        helper.make_tensor_value_info("last_rows", TensorProto.INT64, ["batch"]),
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


def _session(model: bytes | str, threads: int, shared: dict[str, Any], spin: bool) -> ort.InferenceSession:
    """An ONNX Runtime session of `model` on `threads` threads; the initializers named in `shared`
    are the given OrtValues (one copy for every session), not copies of the graph's."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # spin: the pool's threads spin between the graph's parallel sections (for one stream's decode, waking
    # a sleeping thread for each of ~100 small nodes cost a quarter of its time) and stop when a run
    # returns, so between steps the cores are the event loop's. Not for the big passes (prefills, batches):
    # there it gained nothing measurable and took the core the event loop needs for arriving requests
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # no arena: a growing arena keeps its high-water mark; plain malloc gives big buffers back
    options.enable_cpu_mem_arena = options.enable_mem_pattern = False
    for name, value in shared.items():
        options.add_initializer(name, value)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def default_cache_dir() -> Path:
    """Where built graphs are kept: SLM_ONNX_CACHE, else the user's cache folder (XDG_CACHE_HOME or
    ~/.cache)/slm/onnx."""
    if configured := os.environ.get("SLM_ONNX_CACHE"):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slm" / "onnx"


@functools.cache
def _this_module() -> bytes:
    """This module's source, read once: graphs built by other code are other graphs."""
    return Path(__file__).read_bytes()


def _writable(folder: Path) -> bool:
    """Whether `folder` could be made and written to (it, or its nearest existing parent, is writable)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def graph_key(directory: Path, kernel: str) -> str:
    """A name for the graph of this checkpoint and kernel as this code on this CPU builds it: any change
    to the weights file (size, modification time), its config.json, this module, ONNX Runtime's
    version or the CPU's int8 path gives another name, so a stale graph is never loaded."""
    weights = (directory / WEIGHTS).stat()
    digest = hashlib.sha256()
    for part in (
        (directory / "config.json").read_bytes(),
        _this_module(),
        f"{weights.st_size} {weights.st_mtime_ns} {kernel} {signed_weights_exact()} {ort.__version__}".encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return f"{directory.name}-{kernel}-{digest.hexdigest()[:20]}.onnx"


def _built(directory: Path, kernel: str) -> bytes:
    """The serialized graph of an int8 checkpoint for one kernel (CheckpointError for bad weights)."""
    try:
        weights = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} is corrupt ({e})") from e
    return build_model(weights, read_config(directory)["model"], kernel)


def build_graph_file(directory: Path, kernel: str, path: Path) -> None:
    """Build the graph of an int8 checkpoint and write it to `path` (atomically: a reader never sees half)."""
    graph = _built(directory, kernel)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".building-", delete=False) as f:
        f.write(graph)
    os.chmod(f.name, 0o644)  # built by root at image build, read by the service's own user
    os.replace(f.name, path)


def private_temp_dir() -> Path:
    """The fallback cache folder: this user's own folder in the system temp folder (another user of a
    shared /tmp cannot have made it, nor put graphs in it: see trusted)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"slm-onnx-{uid}"


def trusted(folder: Path) -> bool:
    """Whether graphs in `folder` may be loaded: on POSIX, a folder of this user's or root's that no one
    else may write to (a shared temp folder's planted file is never run); elsewhere any folder."""
    if not hasattr(os, "getuid"):
        return True
    info = folder.stat()
    return info.st_uid in (os.getuid(), 0) and not info.st_mode & 0o022


def cached_graphs(directory: Path, kernels: list[str], cache: Path | None = None) -> dict[str, bytes | Path]:
    """Each kernel's graph of the checkpoint: the cached file, else built into the cache by a child
    process (`python -m model.ort_engine --build`: the onnx package and the build's transient ~100 MB stay
    out of this process, which only loads the file), else, where no cache folder can be written (a
    read-only image without SLM_ONNX_CACHE), built here in memory."""
    folders = [cache or default_cache_dir(), private_temp_dir()]
    graphs: dict[str, bytes | Path] = {}
    for kernel in kernels:
        name = graph_key(directory, kernel)
        found = next((f / name for f in folders if (f / name).is_file() and trusted(f)), None)
        for folder in [f for f in folders if _writable(f)] if found is None else []:  # no child in vain
            command = [
                sys.executable,
                "-m",
                "model.ort_engine",
                "--build",
                str(directory),
                "--kernel",
                kernel,
            ]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            built = subprocess.run(
                [*command, "--cache", str(folder)], env=env, capture_output=True, text=True
            )
            if built.returncode == 0 and (folder / name).is_file() and trusted(folder):
                found = folder / name
                break
            why = built.stderr[-500:] or "a folder others may write to"
            log.warning("no %s graph from %s: %s", kernel, folder, why)
        graphs[kernel] = _built(directory, kernel) if found is None else found
    return graphs


def cpu_identity() -> str:
    """The CPU as the kernels see it: its model name and feature flags (/proc/cpuinfo's first processor;
    a name alone can hide different CPUs: "AMD EPYC" is both an AVX2 and an AVX-512 machine), else what
    the platform says."""
    try:
        info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(line for line in info.splitlines() if line.split(":")[0].strip() in wanted)


def small_pass_record(graphs: dict[str, bytes | Path]) -> Path | None:
    """Where the small-pass size measured on this CPU for these graphs is kept: beside the MatMulNBits graph,
    named by it and by the CPU; None unless both kernels' graphs are cached files."""
    nbits = graphs.get("nbits")
    if set(graphs) != set(KERNELS) or not isinstance(nbits, Path):
        return None
    cpu = hashlib.sha256(cpu_identity().encode()).hexdigest()[:12]
    return nbits.with_name(f"{nbits.stem}-{cpu}.small-pass.json")


def read_small_pass(record: Path) -> int | None:
    """The measured small-pass size in `record`; None when there is none (or it is unreadable)."""
    try:
        value = json.loads(record.read_text())["small_pass"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if type(value) is int and 0 <= value <= MEASURED_SIZES[-1] else None  # not a bool either


def write_small_pass(record: Path, small_pass: int, medians: dict[int, dict[str, float]]) -> None:
    """Keep a measured small-pass size and its timings (atomically; a folder that refuses it costs only a
    measurement at the next start)."""
    cpu = cpu_identity().splitlines()[0].split(":", 1)[-1].strip()
    ms = {n: {kernel: round(t * 1e3, 3) for kernel, t in times.items()} for n, times in medians.items()}
    try:
        with tempfile.NamedTemporaryFile("w", dir=record.parent, prefix=".measuring-", delete=False) as f:
            json.dump({"small_pass": small_pass, "cpu": cpu, "median_ms_by_rows": ms}, f)
        os.chmod(f.name, 0o644)
        os.replace(f.name, record)
    except OSError as e:
        log.warning("the measured kernel choice was not kept in %s: %s", record.parent, e)


def host_busy() -> str | None:
    """Why a timing taken now should not be kept: the host's 1-minute load average at BUSY_LOAD per CPU
    or more, said in words; None on a quiet host, or where the load average is unknown. Per host CPU, not
    per CPU this process may use (runtime.cpu_budget): the load average counts the whole host's work,
    also in a container."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cpus = os.cpu_count() or 1
    return f"a load average of {load:.1f} on {cpus} CPUs" if load >= BUSY_LOAD * cpus else None


def measure_small_pass(engine: OrtEngine) -> tuple[int, dict[int, dict[str, float]]]:
    """The largest pass size n such that MatMulNBits was faster than DynamicQuantizeMatMul at every measured
    size up to n (MEASURED_SIZES, up to the engine's slots), timed on this CPU with the engine's own
    sessions: decode passes over its first slots (prefilled, then left empty again), the kernels taking
    turns, medians; the sizes past the first where MatMulNBits was not faster are not timed. 0:
    DynamicQuantizeMatMul for every pass. Also returns each kernel's median seconds by pass size timed."""
    bound, filled = set(engine._bindings), 0
    small, medians = 0, {}
    for n in (n for n in MEASURED_SIZES if n <= engine.max_batch):
        fill = range(filled, n)  # only the slots this size needs: the timing may stop at the first sizes
        engine.prefill_many(list(fill), [[5 + i] * 16 for i in fill])
        filled = n
        ids = np.full((n, 1), 5, np.int64)
        lengths = [engine.positions[s] + 1 for s in range(n)]  # the same position each time: no slot fills
        times: dict[str, list[float]] = {kernel: [] for kernel in KERNELS}
        for i in range(MEASURED_PASSES + 1):
            for kernel in KERNELS if i % 2 else KERNELS[::-1]:
                start = time.perf_counter()
                engine._run(0, n, ids, lengths, kernel=kernel)
                if i:  # the first pass of each is a warm-up
                    times[kernel].append(time.perf_counter() - start)
        medians[n] = {kernel: statistics.median(t) for kernel, t in times.items()}
        if medians[n]["nbits"] >= medians[n]["dq"]:
            break  # the sizes past this one cannot change the answer
        small = n
    for slot in range(filled):
        engine.release(slot)
    for key in set(engine._bindings) - bound:  # their logits buffers (up to 1 MB each) serve no stream
        del engine._bindings[key]
    log.info("passes of up to %d rows take MatMulNBits on this CPU (measured)", small)
    return small, medians


def prefill_passes(prompts: list[tuple[int, int]]) -> list[list[int]]:
    """How prompts that arrived together, (slot, length) each, share prefill passes: the indices of each
    pass's prompts, by slot. A pass covers consecutive slots (its cache rows are one span), computes
    at most PASS_POSITIONS positions (a prompt longer than that goes alone) and pads its prompts to the
    longest by at most max(PAD_ALLOWANCE, a quarter of their own tokens)."""
    passes: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i][0]):
        slot, length = prompts[i]
        if passes:
            last = passes[-1]
            lengths = [prompts[j][1] for j in last] + [length]
            computed = len(lengths) * max(lengths)
            if (
                slot == prompts[last[-1]][0] + 1
                and computed <= PASS_POSITIONS
                and computed - sum(lengths) <= max(PAD_ALLOWANCE, sum(lengths) // 4)
            ):
                last.append(i)
                continue
        passes.append([i])
    return passes


class OrtEngine(Slots):
    """The Engine API (prefill, decode, position, release, generate) on ONNX Runtime: a KV cache of
    (n_layer, 2, max_batch, n_head, block_size, head_dim) fp32 in numpy, written in place.

    With matmul="auto" (the default) it holds one session per int8 kernel over the same cache and
    embedding table, and each pass takes the kernel that is faster for its size: MatMulNBits for a pass
    of at most SMALL_PASS rows (one or a few streams decoding: it reads the weights at close to the
    memory's pace), DynamicQuantizeMatMul for prefills and larger batches (its GEMM is faster there).
    `graphs` maps each kernel to its serialized graph or a file holding it (see cached_graphs); with one
    kernel's graph alone, that kernel takes every pass."""

    def __init__(
        self, graphs: dict[str, bytes | Path], shared: dict[str, np.ndarray], config: dict[str, Any],
        max_batch: int = 16, threads: int = 2, eos_id: int = EOS_ID, small_pass: int = SMALL_PASS,
    ) -> None:  # fmt: skip
        super().__init__(max_batch, config["block_size"], eos_id)
        self.small_pass = small_pass  # passes of up to this many rows take MatMulNBits (see kernel)
        self.config, self.n_layer = config, config["n_layer"]
        n_head = config["n_head"]
        # the embedding table and its scales: one copy, read in place by every session (kept alive here)
        self._shared = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in shared.items()}
        self.sessions = {}
        for kernel, graph in graphs.items():
            source = graph if isinstance(graph, bytes) else str(graph)
            self.sessions[kernel] = _session(source, threads, self._shared, spin=kernel == "nbits")
            _give_back_freed_memory()  # the graph's bytes, copied into the session
        shape = (self.n_layer, 2, max_batch, n_head, self.block_size, config["n_embd"] // n_head)
        nbytes = int(np.prod(shape)) * 4
        self.cache = np.frombuffer(zeroed_pages(nbytes), np.float32).reshape(shape)  # committed as written
        self._bindings: dict[tuple[str, int, int], tuple[Any, np.ndarray]] = {}

    def kernel(self, rows: int) -> str:
        """The session for a pass that computes `rows` positions (batch x sequence)."""
        if len(self.sessions) == 1:
            return next(iter(self.sessions))
        return "nbits" if rows <= self.small_pass else "dq"

    @classmethod
    def from_checkpoint(
        cls, directory: str | Path, matmul: str = MATMUL, cache: Path | None = None,
        small_pass: int | None = None, **kwargs: Any,
    ) -> OrtEngine:  # fmt: skip
        """The engine of an int8 checkpoint folder (CheckpointError for anything else). Its graphs come
        from the cache folder (`cache`, else default_cache_dir()), built there first when missing.
        `small_pass` (see kernel): as given, else as measured on this CPU and kept beside the cached graphs
        (measured now if nothing is kept for this CPU and the folder is writable: a first start, and an
        engine of at least MEASURED_SLOTS slots), else SMALL_PASS."""
        directory = Path(directory)
        meta = read_config(directory)
        if (meta.get("quantization") or {}).get("scheme") != INT8_SCHEME:
            raise CheckpointError(
                f"{directory}: the ONNX engine serves int8 checkpoints (python -m model.export)"
            )
        kernels = KERNELS if matmul == "auto" else [matmul]
        if not set(kernels) <= set(KERNELS):
            raise ValueError(f"matmul is auto, {' or '.join(KERNELS)}, not {matmul!r}")
        try:  # first: a missing or corrupt weights file is a CheckpointError before anything is built
            with safe_open(str(directory / WEIGHTS), "np") as f:
                shared = shared_initializers({name: f.get_tensor(name) for name in SHARED_WEIGHTS})
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"checkpoint {directory}: {WEIGHTS} is corrupt ({e})") from e
        head_size = meta["model"]["n_embd"] // meta["model"]["n_head"]
        if head_size % 16:  # GroupQueryAttention's CPU kernel
            raise CheckpointError(
                f"{directory}: the ONNX engine needs a head size that is a multiple of 16, not {head_size}"
            )
        graphs = cached_graphs(directory, kernels, cache)
        record = small_pass_record(graphs)
        if small_pass is None and record is not None:
            small_pass = read_small_pass(record)
        # DynamicQuantizeMatMul takes every pass: no MatMulNBits session (~30 MB)
        if small_pass == 0 and len(graphs) > 1:
            graphs = {"dq": graphs["dq"]}
        engine = cls(
            graphs,
            shared,
            meta["model"],
            small_pass=SMALL_PASS if small_pass is None else small_pass,
            **kwargs,
        )
        if (
            small_pass is None
            and record is not None
            and _writable(record.parent)
            and engine.max_batch >= MEASURED_SLOTS
        ):  # graphs in this user's cache with nothing measured on this CPU yet: a first start, which has
            # just built them (seconds); a read-only image's cache on another CPU keeps the default
            if busy := host_busy():  # a timing now would rank the kernels by the other work: not taken
                log.warning(
                    "the kernels were not timed beside other work (%s): the default is used, and they are "
                    "timed at the next start",
                    busy,
                )
                return engine
            engine.small_pass, medians = measure_small_pass(engine)
            if busy := host_busy():
                log.warning(
                    "the kernels were timed beside other work (%s): not kept, measured again at the next start",
                    busy,
                )
            else:
                write_small_pass(record, engine.small_pass, medians)
            if engine.small_pass == 0:
                engine.drop("nbits")
        return engine

    def drop(self, kernel: str) -> None:
        """Close `kernel`'s session, whose passes the other kernel takes from now on (and free its memory)."""
        if kernel not in self.sessions or len(self.sessions) == 1:
            raise ValueError(f"{kernel!r} is not a session this engine can do without")
        del self.sessions[kernel]
        for key in [key for key in self._bindings if key[0] == kernel]:
            del self._bindings[key]
        _give_back_freed_memory()

    def _binding(self, kernel: str, first: int, count: int) -> tuple[Any, np.ndarray]:
        """The IO binding of the slots first..first+count-1 (their cache rows bound in place as both
        past and present) and its logits buffer, in one kernel's session: made once per span, reused by
        every step after."""
        key = (kernel, first, count)
        if key not in self._bindings:
            binding = self.sessions[kernel].io_binding()
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

    def _run(
        self, first: int, count: int, ids: np.ndarray, lengths: list[int], last: list[int] | None = None,
        kernel: str | None = None,
    ) -> np.ndarray:  # fmt: skip
        """One forward pass over the slots first..first+count-1, `ids` (count, S); a copy of the logits
        (count, V) at each row's `last` index in the pass (default: its last, S - 1), in `kernel`'s session
        (default: the one for the pass's size)."""
        rows, width = ids.shape
        kernel = kernel or self.kernel(ids.size)
        binding, logits = self._binding(kernel, first, count)
        binding.bind_cpu_input("ids", ids)
        binding.bind_cpu_input("seqlens", np.array([n - 1 for n in lengths], np.int32))
        binding.bind_cpu_input("total", np.array(max(lengths), np.int32))
        at = [width - 1] * rows if last is None else last
        binding.bind_cpu_input("last_rows", np.array([b * width + i for b, i in enumerate(at)], np.int64))
        self.sessions[kernel].run_with_iobinding(binding)
        return logits.copy()  # the buffer is the next step's (copy_outputs_to_cpu would copy the caches too)

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        """Fill the slot's cache with `ids` (from position 0); returns the last position's logits (V,)."""
        return self.prefill_many([slot], [ids])[0]

    def prefill_many(self, slots: list[int], prompts: list[list[int]]) -> np.ndarray:
        """Fill each slot's cache with its prompt (from position 0), prompts that arrived together in as
        few passes as prefill_passes allows; returns each prompt's last-position logits (len(slots), V), in
        the order given. Rows of one pass are right-padded to its longest prompt: a pad's keys land past
        its row's length, where the row's own next tokens overwrite them."""
        self._check_prefill_many(slots, prompts)
        out = np.empty((len(slots), self.config["vocab_size"]), np.float32)
        for group in prefill_passes([(s, len(p)) for s, p in zip(slots, prompts, strict=True)]):
            lengths = [len(prompts[i]) for i in group]
            width = max(lengths)
            batch = np.full((len(group), width), self.eos_id, np.int64)
            for row, i in enumerate(group):
                batch[row, : lengths[row]] = prompts[i]
            out[group] = self._run(slots[group[0]], len(group), batch, lengths, [n - 1 for n in lengths])
            if batch.size >= TRIM_AFTER:  # its intermediates (MBs) leave holes in the heap: give them back
                _give_back_freed_memory()
        for slot, ids in zip(slots, prompts, strict=True):
            self.positions[slot] = len(ids)
        return out

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


def main(argv: list[str] | None = None) -> None:
    """Build an int8 checkpoint's graphs into the cache, as a server's first start would, and measure which
    passes are small on this CPU (a Dockerfile runs this at image build, so a cold start only loads them)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--build", type=Path, required=True, metavar="CHECKPOINT", help="int8 checkpoint folder")
    p.add_argument("--kernel", choices=KERNELS, action="append", help="one kernel's graph (default: each)")
    p.add_argument("--cache", type=Path, help="cache folder (default: SLM_ONNX_CACHE or ~/.cache/slm/onnx)")
    args = p.parse_args(argv)
    cache = args.cache or default_cache_dir()
    kernels = args.kernel or KERNELS
    for kernel in kernels:
        path = cache / graph_key(args.build, kernel)
        if not path.is_file():
            build_graph_file(args.build, kernel, path)
        print(path)
    if set(kernels) == set(KERNELS):
        engine = OrtEngine.from_checkpoint(args.build, cache=cache, max_batch=MEASURED_SIZES[-1])
        record = small_pass_record({kernel: cache / graph_key(args.build, kernel) for kernel in KERNELS})
        if record is not None and record.is_file():
            print(record)
        print(f"passes of up to {engine.small_pass} rows take MatMulNBits on this CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
