"""Shared fixtures for the model tests: a tiny tokenizer and a tiny GPT, trained or built here."""

from __future__ import annotations

import pytest
import torch

from model.gpt import GPT, GPTConfig
from model.tokenizer import Tokenizer
from tests.model.helpers import TINY_VOCAB, make_texts


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and idle-waiting threads stall on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return make_texts()


@pytest.fixture(scope="session")
def tokenizer(texts: list[str]) -> Tokenizer:
    return Tokenizer.train(texts, vocab_size=TINY_VOCAB, show_progress=False)


@pytest.fixture(scope="session")
def tiny_config() -> GPTConfig:
    return GPTConfig(vocab_size=TINY_VOCAB, block_size=48, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def tiny_model(tiny_config: GPTConfig) -> GPT:
    """A randomly initialised tiny GPT (seeded), in eval mode."""
    torch.manual_seed(1234)
    return GPT(tiny_config).eval()


@pytest.fixture(scope="session")
def trained_model(tiny_config: GPTConfig, tokenizer: Tokenizer, texts: list[str]) -> GPT:
    """The tiny GPT after 150 AdamW steps on the fixture text, so its greedy choices are clear-cut."""
    torch.manual_seed(0)
    model = GPT(tiny_config)
    stream = torch.tensor([i for line in texts for i in tokenizer.encode(line) + [tokenizer.eos_id]])
    T = tiny_config.block_size
    opt = model.configure_optimizer(
        weight_decay=0.0, learning_rate=3e-3, betas=(0.9, 0.95), device_type="cpu"
    )
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        starts = torch.randint(0, len(stream) - T - 1, (16,), generator=gen)
        x = torch.stack([stream[s : s + T] for s in starts])
        y = torch.stack([stream[s + 1 : s + T + 1] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()
