"""Supervised router tuning (DESIGN §1.6): what the proxy windows teach the router."""

from __future__ import annotations

from conftest import EXPERT_DOMAINS

from components.builtin_corpora import PUBLIC, load_domain, proxy_corpus
from components.checkpoints import load_tokenizer
from components.evaluation import RoutingRecorder, perplexity
from components.expert_module import ModuleRef
from components.merge import merge
from components.router_tuning import RouterTuningConfig, supervised_proxy_tuner
from components.runtime import apply_selection, load_flexo_model
from components.token_data import token_stream
from governance.manifest import ExpertManifest


def _public_share(merged, text: list[str], tokenizer, exclude: list[str] | None = None) -> float:
    model = load_flexo_model(merged)
    apply_selection(model, exclude=exclude)
    with RoutingRecorder(model) as recorder:
        perplexity(model, token_stream(text, tokenizer, max_tokens=4096), 128)
    return recorder.shares()[PUBLIC]


def _merge_inputs(anchor, modules) -> tuple:
    refs = [ModuleRef(name=d, directory=modules[d],
                      weights_sha256=ExpertManifest.read(modules[d]).weights_sha256)
            for d in EXPERT_DOMAINS]
    proxies = {PUBLIC: proxy_corpus(PUBLIC).split("train").texts()} | {
        d: proxy_corpus(d).texts() for d in EXPERT_DOMAINS}
    return load_tokenizer(anchor), refs, proxies


def test_public_windows_teach_the_router_to_keep_public_text_on_the_public_expert(
        tiny_anchor, modules, tmp_path):
    """With `public_target` the public proxy windows are supervised to the public expert (the
    anchor's own FFN), so public text routes there more than when they get the LM loss only;
    measured on public documents the tuning never saw (the pool's test split)."""
    tokenizer, refs, proxies = _merge_inputs(tiny_anchor, modules)
    public = proxy_corpus(PUBLIC)
    shares = {}
    for target in (True, False):
        out = tmp_path / f"target-{target}"
        cfg = RouterTuningConfig(steps=15, lr=1e-2, public_target=target)
        merge(tiny_anchor, refs, out, top_k=len(refs) + 1,
              tune=supervised_proxy_tuner(proxies, tokenizer, cfg, progress=False))
        shares[target] = _public_share(out, public.split("test").texts(), tokenizer)
    assert shares[True] > shares[False] + 0.05, shares


def test_the_opt_out_term_keeps_a_domain_on_the_public_expert_once_its_module_is_masked(
        tiny_anchor, modules, tmp_path):
    """With `opt_out_public_share`, each contributor's proxy windows, its own expert masked, are
    held to that share on the public expert: what a release without the module must give its
    text. Measured on each domain's own held-out text (never tuned on), its expert masked. With
    `opt_out_public_rows` the public windows are held too, a contributor expert masked in turn:
    public held-out text keeps more on the public expert whichever module is masked."""
    tokenizer, refs, proxies = _merge_inputs(tiny_anchor, modules)
    public_test = proxy_corpus(PUBLIC).split("test").texts()
    own, public = {}, {}
    for name, floor, public_rows in (("none", None, False), ("own", 0.95, False),
                                     ("all", 0.95, True)):
        out = tmp_path / name
        cfg = RouterTuningConfig(steps=15, lr=1e-2, opt_out_public_share=floor,
                                 opt_out_public_rows=public_rows)
        merge(tiny_anchor, refs, out, top_k=len(refs) + 1,
              tune=supervised_proxy_tuner(proxies, tokenizer, cfg, progress=False))
        own[name] = {d: _public_share(out, load_domain(d).split("test").texts(), tokenizer,
                                      exclude=[d]) for d in EXPERT_DOMAINS}
        public[name] = {d: _public_share(out, public_test, tokenizer, exclude=[d])
                        for d in EXPERT_DOMAINS}
    for d in EXPERT_DOMAINS:
        assert own["own"][d] > own["none"][d] + 0.02, own
        assert public["all"][d] > public["own"][d], public
