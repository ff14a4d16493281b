"""Int8 weights with one fp16 scale per output row: the shipped form of a checkpoint.

Every matrix (Linear weights and both embedding tables) becomes int8 `q` with `w ≈ q * scale[row]`,
scale = max|w[row]| / 127 rounded to fp16. Vectors (LayerNorm weights, biases) stay fp32.
The layers compute with exactly the stored int8 numbers and scales, in one of two ways:

- exact: x @ (q * scale).T in the activations' dtype; the only error is the weights' rounding.
- packed (CPU, the default after load_checkpoint): fbgemm's int8 GEMM, which also quantizes each
  input row set to 7-bit unsigned integers on the fly (per tensor, range-reduced for AVX2). It reads
  a quarter of the bytes of fp32 and runs 3-5x faster; the activation rounding adds a little error
  (on the default checkpoint +0.039 on held-out chitchat, against ~0.0005 from the weights' rounding:
  model.evaluate's int8 column, beside its "as served" one from ONNX Runtime, which rounds each input
  row to int8 on its own).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch.nn import functional as F


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float -> int8 (out, in) and fp16 scales (out,), with w ≈ q * scale[:, None]."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8).half()  # rounded to what is stored
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias, with q int8 (out, in) and scale (out,)."""

    weight: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(
        self, in_features: int, out_features: int, bias: bool, device: torch.device | str | None = None
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device)
        )
        self.register_buffer("weight_scale", torch.empty(out_features, dtype=torch.float32, device=device))
        self.bias = (
            nn.Parameter(torch.empty(out_features, device=device), requires_grad=False) if bias else None
        )
        self.packed: object | None = None  # fbgemm's packed weight, see pack()

    def pack(self) -> None:
        """Prepare the fast CPU path: the same int8 weights and scales in fbgemm's packed layout.

        The plain int8 copy is dropped (it was a second copy of every matrix in the serving
        process): `weight` and state_dict() read it back from the packed form, exactly."""
        with warnings.catch_warnings():  # torch marks its quantized tensors deprecated (still in 2.x)
            warnings.simplefilter("ignore")
            zero = torch.zeros(self.out_features, dtype=torch.long)
            w = torch._make_per_channel_quantized_tensor(self.weight, self.weight_scale.double(), zero, 0)
            bias = None if self.bias is None else self.bias.detach().float()
            self.packed = torch.ops.quantized.linear_prepack(w, bias)
        del self._buffers["weight"]

    def __getattr__(self, name: str):
        if name == "weight" and self.__dict__.get("packed") is not None:
            return self.unpacked_weight()
        return super().__getattr__(name)

    def unpacked_weight(self) -> torch.Tensor:
        """The int8 matrix (out, in) back from fbgemm's packed form (a new tensor each call)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, _ = torch.ops.quantized.linear_unpack(self.packed)
        return w.int_repr()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if "weight" not in self._buffers:  # packed: the same key and values as before packing
            destination[prefix + "weight"] = self.unpacked_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.device.type == "cpu" and x.dtype == torch.float32:
            return torch.ops.quantized.linear_dynamic(x, self.packed, True)  # reduce_range: no AVX2 overflow
        y = F.linear(x, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
        return y if self.bias is None else y + self.bias


class Int8Embedding(nn.Module):
    """An embedding table kept int8 with one scale per row, dequantized per lookup."""

    weight: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, num_embeddings: int, embedding_dim: int, device: torch.device | str | None = None):
        super().__init__()
        self.register_buffer(
            "weight", torch.empty(num_embeddings, embedding_dim, dtype=torch.int8, device=device)
        )
        self.register_buffer("weight_scale", torch.empty(num_embeddings, dtype=torch.float32, device=device))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight[idx].float() * self.weight_scale[idx].unsqueeze(-1)


def swap_to_int8(model: nn.Module) -> list[nn.Module]:
    """Replace every nn.Linear / nn.Embedding of `model` by an empty int8 twin on the same device
    (use the meta device to allocate nothing); returns the new modules."""
    new = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            device = child.weight.device if isinstance(child, nn.Linear | nn.Embedding) else None
            if isinstance(child, nn.Linear):
                m: nn.Module = Int8Linear(
                    child.in_features, child.out_features, child.bias is not None, device
                )
            elif isinstance(child, nn.Embedding):
                m = Int8Embedding(child.num_embeddings, child.embedding_dim, device)
            else:
                continue
            setattr(parent, name, m)
            new.append(m)
    return new


def int8_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fp32 model's weights in the stored int8 form: `<name>.weight` int8 and
    `<name>.weight_scale` fp16 for every Linear and Embedding, everything else fp32."""
    quantized = {
        f"{name}.weight": m.weight
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | nn.Embedding)
    }
    out = {}
    for key, t in model.state_dict().items():
        if key in quantized:
            out[key], out[key + "_scale"] = quantize_rows(t)
        else:
            out[key] = t.detach().float().contiguous()
    return out


def pack_for_cpu(model: nn.Module) -> bool:
    """Switch every Int8Linear of a CPU model to fbgemm's int8 GEMM; False where torch has none."""
    if not {"fbgemm", "x86"} & set(torch.backends.quantized.supported_engines):
        return False
    for m in model.modules():
        if isinstance(m, Int8Linear):
            m.pack()
    return True
