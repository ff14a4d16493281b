import pytest
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
    opt = model.configure_optimizer(weight_decay=0.1, learning_rate=1e-2)
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


def test_flops_per_token_counts_the_matmul_parameters(tiny_model):
    n = tiny_model.num_params() - tiny_model.transformer.wte.weight.numel()
    assert tiny_model.flops_per_token() > 6 * n


GPT2 = dict(norm="layer", pos="learned", mlp="gelu", qk_norm=False, zero_init=False)


def test_gpt2_recipe_is_still_available(tiny_config):
    model = GPT(GPTConfig(**{**tiny_config.__dict__, **GPT2}))
    assert isinstance(model.transformer.ln_f, torch.nn.LayerNorm) and model.transformer.wpe is not None
    modern = GPT(tiny_config)
    assert isinstance(modern.transformer.ln_f, torch.nn.RMSNorm) and modern.transformer.wpe is None
    assert modern.num_params() == model.num_params() - tiny_config.block_size * tiny_config.n_embd - sum(
        m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm) and m.bias is not None
    )


def test_zero_init_makes_every_block_start_as_the_identity(tiny_config):
    model = GPT(tiny_config)
    for block in model.transformer.h:
        assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
    x = torch.randn(2, 5, tiny_config.n_embd)
    assert torch.equal(model.transformer.h[0](x, None), x)


def test_rotary_attention_depends_on_relative_position_only(tiny_config):
    """Scores of q at position i with k at j depend on i - j: shifting both leaves them equal."""
    from model.gpt import apply_rotary, rotary

    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i: int, j: int) -> torch.Tensor:
        cq, sq = rotary(torch.tensor([i]), 16, 10000.0)
        ck, sk = rotary(torch.tensor([j]), 16, 10000.0)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    assert torch.allclose(score(7, 3), score(27, 23), atol=1e-5)
    assert not torch.allclose(score(7, 3), score(7, 5), atol=1e-3)


def test_muon_optimizer_steps_hidden_matrices_and_adamw_the_rest(tiny_config):
    from model.optim import Muon

    torch.manual_seed(0)
    model = GPT(tiny_config)
    opt = model.configure_optimizer(0.0, 1e-2, muon_lr=0.02)
    muon = next(o for o in opt.optimizers if isinstance(o, Muon))
    hidden = {id(p) for p in muon.param_groups[0]["params"]}
    assert hidden == {id(p) for p in model.transformer.h.parameters() if p.dim() == 2}
    assert id(model.lm_head.weight) not in hidden and id(model.transformer.wte.weight) not in hidden
    idx = torch.randint(0, tiny_config.vocab_size, (4, 16))
    targets = torch.roll(idx, -1, dims=1)
    losses = []
    for _ in range(5):
        _, loss = model(idx, targets)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0]
    opt.set_lr_factor(0.5)
    assert muon.param_groups[0]["lr"] == 0.01


def test_fp32_newton_schulz_matches_torchs_bf16_one():
    from torch.optim._muon import _zeropower_via_newtonschulz

    from model.optim import newton_schulz_fp32

    g = torch.randn(64, 128)
    coefficients = (3.4445, -4.775, 2.0315)
    ours = newton_schulz_fp32(g, coefficients, 5, 1e-7)
    torchs = _zeropower_via_newtonschulz(g, coefficients, 5, 1e-7).float()
    assert (ours - torchs).abs().max() < 0.02 * torchs.abs().max()
    assert newton_schulz_fp32(g.T, coefficients, 5, 1e-7).shape == (128, 64)


def test_set_dropout_drops_in_training_only_and_leaves_the_config(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 12))
    tiny_model.eval()
    before = tiny_model(idx, idx)[0]
    tiny_model.set_dropout(0.5)
    assert tiny_model.config.dropout == 0.0  # the checkpoint's config keeps its own value
    assert torch.equal(tiny_model(idx, idx)[0], before)  # eval mode drops nothing
    tiny_model.train()
    torch.manual_seed(1)
    first = tiny_model(idx, idx)[0]
    torch.manual_seed(2)
    assert not torch.allclose(tiny_model(idx, idx)[0], first)  # training mode drops at random
    tiny_model.set_dropout(0.0)
    assert torch.equal(tiny_model(idx, idx)[0], tiny_model(idx, idx)[0])
    with pytest.raises(ValueError, match="dropout"):
        tiny_model.set_dropout(1.0)
