import torch

from model.gpt import GPT, GPTConfig


def test_default_config_has_about_36m_params():
    with torch.device("meta"):
        model = GPT(GPTConfig())
    assert 35_000_000 < model.num_params() < 37_000_000


def test_forward_shapes_with_and_without_targets(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (3, 10))
    logits, loss = tiny_model(idx)
    assert logits.shape == (3, 1, tiny_config.vocab_size) and loss is None
    logits, loss = tiny_model(idx, idx)
    assert logits.shape == (3, 10, tiny_config.vocab_size) and loss.ndim == 0


def test_loss_mask_counts_only_masked_positions(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 12))
    targets = torch.randint(0, tiny_config.vocab_size, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0, 3:7] = 1
    mask[1, 10] = 1
    logits, loss = tiny_model(idx, targets, mask)
    per_token = torch.nn.functional.cross_entropy(
        logits.view(-1, logits.size(-1)), targets.view(-1), reduction="none"
    )
    expected = per_token[mask.view(-1).bool()].mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    # changing a target outside the mask leaves the loss unchanged
    targets2 = targets.clone()
    targets2[0, 0] = (targets2[0, 0] + 1) % tiny_config.vocab_size
    assert torch.allclose(tiny_model(idx, targets2, mask)[1], loss)


def test_one_optimizer_step_lowers_the_loss(tiny_config):
    torch.manual_seed(0)
    model = GPT(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (4, 16))
    targets = torch.roll(idx, -1, dims=1)
    opt = model.configure_optimizer(
        weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.95), device_type="cpu"
    )
    _, before = model(idx, targets)
    before.backward()
    opt.step()
    _, after = model(idx, targets)
    assert after.item() < before.item()


def test_generate_greedy_is_deterministic_and_extends(trained_model, tiny_config):
    idx = torch.tensor([[5, 6, 7]])
    a = trained_model.generate(idx, 8, temperature=0)
    b = trained_model.generate(idx, 8, temperature=0)
    assert a.shape == (1, 11) and torch.equal(a, b) and torch.equal(a[:, :3], idx)


def test_generate_past_context_crops_window(trained_model, tiny_config):
    idx = torch.randint(4, tiny_config.vocab_size, (1, tiny_config.block_size))
    out = trained_model.generate(idx, 3, temperature=1.0, top_k=5)
    assert out.shape == (1, tiny_config.block_size + 3)


def test_flops_per_token_counts_parameters(tiny_model):
    assert tiny_model.flops_per_token() > 6 * (
        tiny_model.num_params() - tiny_model.transformer.wpe.weight.numel()
    )
