"""Where the chat function's memory goes, for both engines: a breakdown, step by step, each engine in a
fresh process, of the resident set (VmRSS) as the serving process builds up — Python, the web stack,
the runtime (torch or ONNX Runtime), the tokenizer, the int8 weights, the KV cache, a first answer,
8 streams — then the idle and 8-stream figures against the targets (250 and 300 MB).

    PYTHONPATH=. .venv/bin/python bench/memory.py                 # the default checkpoint
    PYTHONPATH=. .venv/bin/python bench/memory.py --checkpoint runs/int8

Each row's "added" is what that step cost; the steps run in the order a chat process runs them.
"8 streams" prefills 8 slots with 300-token prompts and decodes 80 steps: the KV pages a full
window touches. No target is asserted here (a benchmark, not a test); the figures go into README.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

COMMON = r"""
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
rows = [("python itself", rss())]
import fastapi, sqlalchemy, pydantic, uvicorn, httpx  # the web stack every function has
import shared.app, shared.database, shared.models
rows.append(("web stack (fastapi, sqlalchemy, uvicorn, shared)", rss()))
checkpoint = sys.argv[1]
"""

TORCH = r"""
import torch
rows.append(("import torch", rss()))
torch.set_num_threads(2)
from model.tokenizer import Tokenizer
tok = Tokenizer.from_file(checkpoint + "/tokenizer.json")
rows.append(("tokenizer", rss()))
del tok  # load_checkpoint loads its own; freeing this one first keeps the tokenizer counted once
import gc; gc.collect()
from model.checkpoint import load_checkpoint
model, tok, config = load_checkpoint(checkpoint, fast_int8=False)
rows.append(("int8 weights loaded (exact path, not packed)", rss()))
from model.quant import Int8Linear
for module in model.modules():
    if isinstance(module, Int8Linear):
        module.pack()
rows.append(("fbgemm's packed copies (the plain int8 copies dropped)", rss()))
from model.engine import Engine
engine = Engine(model, max_batch=16)
"""

ONNX = r"""
import numpy, onnxruntime  # not onnx: the graphs are built by a child process into the cache
rows.append(("import onnxruntime, numpy", rss()))
from model.tokenizer import Tokenizer
tok = Tokenizer.from_file(checkpoint + "/tokenizer.json")
rows.append(("tokenizer", rss()))
from model.ort_engine import OrtEngine
engine = OrtEngine.from_checkpoint(checkpoint, max_batch=16)
rows.append(("the kernels' sessions from the cached graphs (int8 weights)", rss()))
"""

STREAMS = r"""
rows.append(("KV cache allocated (16 slots, untouched pages)", rss()))
from model.sampling import SamplingParams
list(engine.generate(tok.encode("Hello! How are you today?"), SamplingParams(temperature=0, max_new_tokens=32)))
engine.release(0)
rows.append(("first answer (idle, ready)", rss()))
prompt = (tok.encode("Tell me about the sea, please. ") * 40)[:300]
for slot in range(8):
    engine.prefill(slot, prompt)
for _ in range(80):
    engine.decode(list(range(8)), [tok.eos_id] * 8)
rows.append(("8 streams, 380 tokens each", rss()))
print(json.dumps({"rows": rows, "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules}))
"""


def measure(engine: str, checkpoint: str, root: Path) -> dict:
    code = COMMON + (TORCH if engine == "torch" else ONNX) + STREAMS
    out = subprocess.run(
        [sys.executable, "-c", code, checkpoint], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="model/checkpoints/default")
    args = p.parse_args()
    root = Path(__file__).resolve().parent.parent
    results = {name: measure(name, args.checkpoint, root) for name in ("torch", "onnx")}
    for name, result in results.items():
        title = (
            "torch engine (model/engine.py)"
            if name == "torch"
            else "ONNX Runtime engine (model/ort_engine.py)"
        )
        print(
            f"\n{title}, chat-process memory step by step ({args.checkpoint}); torch imported: "
            f"{result['torch']}, onnx imported: {result['onnx']}\n"
        )
        print("| step | RSS MB | added MB |")
        print("|---|---:|---:|")
        before = 0.0
        for step, mb in result["rows"]:
            print(f"| {step} | {mb:.0f} | {mb - before:+.0f} |")
            before = mb
    print("\n| engine | idle MB (target 250) | 8 streams MB (target 300) |")
    print("|---|---:|---:|")
    for name, result in results.items():
        rows = dict(result["rows"])
        idle, busy = rows["first answer (idle, ready)"], rows["8 streams, 380 tokens each"]
        print(f"| {name} | {idle:.0f} | {busy:.0f} |")


if __name__ == "__main__":
    main()
