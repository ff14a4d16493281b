"""shared/tree.py beside the model it mirrors."""


def test_the_conversations_functions_copy_of_the_window_matches_the_model() -> None:
    """shared/tree.py ships without the model, so it copies the window and the answer room: they agree."""
    from model.checkpoint import read_config
    from model.tokenizer import ANSWER_RESERVE
    from shared.settings import get_settings
    from shared.tree import ANSWER_ROOM, CONTEXT_TOKENS

    assert ANSWER_ROOM == ANSWER_RESERVE
    assert read_config(get_settings().model_dir)["model"]["block_size"] == CONTEXT_TOKENS
