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


def test_the_same_texts_are_embedded_once_and_each_caller_gets_its_own_copy():
    """r_pub's embedding sample is reused within a process (every anchor of one public mix
    embeds the same texts): the reused tensor must be what a fresh computation gives, and a
    caller that changes its copy must not change anyone else's."""
    from components import router_rows

    texts = ["def main(): return 0", "The patient presented with fever.", "To be, or not."]
    first = router_rows.sentence_embeddings(texts)
    first.zero_()  # one caller's change
    reused = router_rows.sentence_embeddings(texts)
    router_rows._EMBEDDED.clear()
    fresh = router_rows.sentence_embeddings(texts)
    assert torch.equal(reused, fresh)
    torch.testing.assert_close(fresh.norm(dim=1), torch.ones(3))
    assert router_rows.sentence_embeddings(texts[:2]).shape == (2, 384)  # another key
