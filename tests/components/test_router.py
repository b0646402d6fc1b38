import torch
from transformers import AutoModelForCausalLM

from components.moe_layout import upcycle
from components.router import FlexoRouter


def _router(bias=None, top_k=2):
    torch.manual_seed(0)
    return FlexoRouter(torch.randn(4, 8), top_k=top_k, bias=bias)


def test_negative_bias_lowers_only_private_logits_and_positive_bias_is_ignored():
    x = torch.randn(5, 8)
    plain = _router()(x)[0]
    biased = _router(torch.tensor([-3.0, -1.0, 2.0, 0.0]))(x)[0]
    # public expert: no bias even if one is stored; b <= 0 enforced as min(b, 0)
    torch.testing.assert_close(biased[:, 0], plain[:, 0])
    torch.testing.assert_close(biased[:, 1], plain[:, 1] - 1.0)
    torch.testing.assert_close(biased[:, 2], plain[:, 2])
    torch.testing.assert_close(biased[:, 3], plain[:, 3])


def test_masked_expert_never_routed_and_top_k_shrinks_to_what_is_on():
    router = _router()
    router.active.copy_(torch.tensor([True, False, True, False]))
    _, weights, index = router(torch.randn(50, 8))
    assert set(index.unique().tolist()) <= {0, 2}
    router.active.copy_(torch.tensor([True, False, False, False]))
    _, weights, index = router(torch.randn(50, 8))
    assert index.shape == (50, 1) and (index == 0).all() and torch.allclose(weights, torch.ones(1))


def test_upcycled_copies_reproduce_the_anchor(tiny_anchor):
    """Both slots hold the anchor FFN and the weights are not renormalised but sum to 1 at top-2."""
    dense = AutoModelForCausalLM.from_pretrained(tiny_anchor)
    c = dense.config
    router = torch.randn(c.num_hidden_layers, 2, c.hidden_size)
    moe = upcycle(dense.state_dict(), c, router).eval()
    ids = torch.randint(0, c.vocab_size, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(moe(ids).logits, dense(ids).logits, atol=1e-5, rtol=0)
