"""Where the chat function's memory goes: a breakdown, step by step, in a fresh process, of the resident
set (VmRSS) as the serving process builds up — Python, the web stack, torch, the tokenizer, the int8
weights, fbgemm's packed copies, the KV cache and a first answer — plus the bytes of each kind of tensor.

    PYTHONPATH=. .venv/bin/python bench/memory.py                 # the default checkpoint
    PYTHONPATH=. .venv/bin/python bench/memory.py --checkpoint runs/int8

Each row's "added" is what that step cost; the steps run in the order a chat process runs them.
No target is asserted here; the figures go into README's serving section.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

STEPS = r"""
import json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
rows = [("python itself", rss())]
import fastapi, sqlalchemy, pydantic, uvicorn, httpx  # the web stack every function has
import shared.app, shared.database, shared.models
rows.append(("web stack (fastapi, sqlalchemy, uvicorn, shared)", rss()))
import torch
rows.append(("import torch", rss()))
torch.set_num_threads(2)
from model.tokenizer import Tokenizer
checkpoint = sys.argv[1]
tok = Tokenizer.from_file(checkpoint + "/tokenizer.json")
rows.append(("tokenizer", rss()))
from model.checkpoint import load_checkpoint
model, tok, config = load_checkpoint(checkpoint, fast_int8=False)
rows.append(("int8 weights loaded (exact path, not packed)", rss()))
from model.quant import Int8Linear
for module in model.modules():
    if isinstance(module, Int8Linear):
        module.pack()
rows.append(("fbgemm's packed copies of the int8 matrices", rss()))
from model.engine import Engine, SamplingParams
engine = Engine(model, max_batch=16)
rows.append(("KV cache allocated (16 slots, untouched pages)", rss()))
list(engine.generate(tok.encode("Hello! How are you today?"), SamplingParams(temperature=0, max_new_tokens=32)))
rows.append(("first answer (one slot touched, kernels warmed)", rss()))
for slot in range(8):
    engine.prefill(slot, tok.encode("Tell me about the sea, please.") * 4)
logits = engine.decode(list(range(8)), [tok.eos_id] * 8)
rows.append(("8 slots prefilled and decoded", rss()))
kinds = {}
for name, tensor in list(model.state_dict().items()):
    kind = "int8 matrices" if tensor.dtype == torch.int8 else f"{tensor.dtype} tensors".replace("torch.", "")
    kinds[kind] = kinds.get(kind, 0) + tensor.numel() * tensor.element_size()
kinds["KV cache (allocated, 16 slots)"] = engine.cache.numel() * engine.cache.element_size()
print(json.dumps({"rows": rows, "tensor_bytes": kinds}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="model/checkpoints/default")
    args = p.parse_args()
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", STEPS, args.checkpoint], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(f"\nchat-process memory, step by step ({args.checkpoint}):\n")
    print("| step | RSS MB | added MB |")
    print("|---|---:|---:|")
    before = 0.0
    for name, mb in result["rows"]:
        print(f"| {name} | {mb:.0f} | {mb - before:+.0f} |")
        before = mb
    print("\n| tensors | MB |")
    print("|---|---:|")
    for kind, size in result["tensor_bytes"].items():
        print(f"| {kind} | {size / 2**20:.1f} |")


if __name__ == "__main__":
    main()
