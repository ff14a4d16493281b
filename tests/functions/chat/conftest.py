"""The chat function's unit tests reuse the model tests' tiny tokenizer and GPT."""

from tests.model.conftest import texts, tiny_config, tokenizer, trained_model  # noqa: F401
