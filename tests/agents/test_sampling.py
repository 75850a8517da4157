import pytest
import torch

from seqmarl.agents import response_forward, sample, selective_log_softmax, tiny_model_and_tokenizer
from seqmarl.algos.core import entropy_from_logits

PROMPTS = ["hi", "a much longer prompt with spaces", "ünïcode 🙂", ""]


def eos_biased(model, tok, bias=4.0):
    """Make EOS likely so that rows finish at different lengths (padding after EOS)."""
    head = model.get_output_embeddings()

    def hook(module, inputs, output):
        output = output.clone()
        output[..., tok.eos_token_id] += bias
        return output

    head.register_forward_hook(hook)
    return model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_a_fresh_forward_pass(arch, temperature):
    model, tok = tiny_model_and_tokenizer(arch)
    eos_biased(model, tok)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    c = sample(
        model,
        tok,
        PROMPTS,
        max_new_tokens=24,
        temperature=temperature,
        top_k=40,
        top_p=0.9,
        repetition_penalty=1.2,
        generator=torch.Generator().manual_seed(0),
        value_head=head,
    )
    lengths = c.lengths.tolist()
    assert len(set(lengths)) > 1, "rows should stop at different lengths"
    assert c.query_mask[:, 0].tolist().count(0) >= 1  # left padding present
    logprobs, values, logits = response_forward(
        model, c, temperature=temperature, value_head=head, return_logits=True
    )
    assert torch.allclose(logprobs, c.logprobs, atol=1e-5, rtol=0)
    assert torch.allclose(values, c.values, atol=1e-5, rtol=0)
    entropy = entropy_from_logits(logits) * c.response_mask
    assert torch.allclose(entropy, c.entropy, atol=1e-4, rtol=0)
    # masks: ones then zeros; every finished row ends with EOS; padding is pad id and logprob 0
    for row, n in enumerate(lengths):
        n = int(n)
        assert c.response_mask[row, :n].all() and not c.response_mask[row, n:].any()
        if n < c.response_ids.shape[1]:
            assert int(c.response_ids[row, n - 1]) == tok.eos_token_id
            assert torch.all(c.response_ids[row, n:] == tok.pad_token_id)
        assert torch.all(c.logprobs[row, n:] == 0)


def test_sampling_is_deterministic_under_a_seed():
    model, tok = tiny_model_and_tokenizer("llama")
    runs = [
        sample(model, tok, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].response_ids, runs[1].response_ids)
    assert runs[0].texts == runs[1].texts
    other = sample(
        model, tok, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(6)
    )
    assert not torch.equal(runs[0].response_ids, other.response_ids)


def test_texts_decode_the_response_tokens():
    model, tok = tiny_model_and_tokenizer("llama")
    c = sample(
        model,
        tok,
        ["x"],
        max_new_tokens=6,
        stop_at_eos=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert c.texts[0] == tok.decode(c.response_ids[0], skip_special_tokens=True)
    assert c.response_ids.shape == (1, 6)


def test_selective_log_softmax_matches_log_softmax():
    logits = torch.randn(5, 7, 13)
    ids = torch.randint(13, (5, 7))
    expected = logits.log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, ids, chunk=2), expected, atol=1e-6)


def test_min_max_length_sampler(make_pool):
    pool = make_pool(max_new_tokens=9, min_new_tokens=3, stop_at_eos=False)
    g = torch.Generator().manual_seed(0)
    lengths = {
        pool["llm_0"].sample(["q", "r"], generator=g).response_ids.shape[1] for _ in range(40)
    }
    assert lengths <= set(range(3, 10)) and len(lengths) >= 4


def test_categorical_draws_follow_the_distribution_and_skip_zero_mass():
    from seqmarl.agents.sampling import sample_categorical

    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.0, 0.8]])
    g = torch.Generator().manual_seed(0)
    n = 20000
    draws = torch.stack([sample_categorical(probs, g) for _ in range(n)], 1)  # (3, n)
    freq = torch.stack([torch.bincount(d, minlength=4).float() / n for d in draws])
    assert (freq[probs == 0] == 0).all()
    assert torch.allclose(freq, probs, atol=0.015)  # ~4 sigma at n = 20k
    # unnormalised rows (e.g. softmax of masked scores times a constant) draw the same way
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sample_categorical(probs * 7.0, g1), sample_categorical(probs, g2))


def test_stop_strings_end_rows_early_and_cut_their_text():
    from seqmarl.agents.sampling import cut_at_stop

    model, tok = tiny_model_and_tokenizer("llama")
    x = tok("x", add_special_tokens=False)["input_ids"][-1]
    head = model.get_output_embeddings()

    def likely_x(module, inputs, output):  # "x" in most rows within a few tokens
        output = output.clone()
        output[..., x] += 3.0
        return output

    head.register_forward_hook(likely_x)
    prompts = PROMPTS * 2

    def run(**kw):
        g = torch.Generator().manual_seed(0)
        return sample(model, tok, prompts, max_new_tokens=24, generator=g, stop_at_eos=False, **kw)

    free, stopped = run(), run(stop_strings=["x"])
    hits = 0
    for i, text in enumerate(free.texts):
        n = int(stopped.response_mask[i].sum())
        # same draws until the stop: the stopped row is a prefix of the free one
        assert torch.equal(stopped.response_ids[i, :n], free.response_ids[i, :n])
        assert stopped.texts[i] == cut_at_stop(text, ["x"])
        if "x" in text:
            hits += 1
            assert n < 24 and int(stopped.response_ids[i, n - 1]) == x  # ends on the "x"
        else:
            assert n == 24
    assert hits >= 4
    assert cut_at_stop("12 toys.\nQuestion: next", ["Question:", "\n\n"]) == "12 toys.\n"
    assert cut_at_stop("no stop here", ["Question:"]) == "no stop here"


def test_shared_rows_finds_repeated_prompts_in_row_order():
    from seqmarl.agents.sampling import shared_rows

    keys = torch.tensor([[1, 2], [1, 2], [3, 4], [3, 4], [0, 9], [0, 9]])
    first, inverse = shared_rows(keys)
    assert first.tolist() == [0, 2, 4] and inverse.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(keys[first][inverse], keys)
    scattered = torch.tensor([[5], [6], [5], [6]])
    first, inverse = shared_rows(scattered)
    assert first.tolist() == [0, 1] and inverse.tolist() == [0, 1, 0, 1]
    # mostly distinct rows: one pass is cheaper than two
    assert shared_rows(torch.tensor([[1], [2], [3], [3]])) is None
    assert shared_rows(torch.tensor([[1]])) is None


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_prompt_passes_equal_one_full_pass(arch, monkeypatch):
    """Group rows (k answers per prompt) share one prompt pass: same tokens, log-probs,
    values, logits and gradients as running every row in full."""
    import seqmarl.agents.sampling as sampling

    model, tok = tiny_model_and_tokenizer(arch)
    eos_biased(model, tok, bias=2.0)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    prompts = [p for p in PROMPTS for _ in range(3)]  # copy-major, as the rollout plays them

    def run(share: bool):
        if not share:
            monkeypatch.setattr(sampling, "shared_rows", lambda keys: None)
        g = torch.Generator().manual_seed(0)
        c = sample(model, tok, prompts, max_new_tokens=12, generator=g, value_head=head)
        model.zero_grad()
        head.zero_grad()
        logprobs, values, logits = response_forward(
            model, c, temperature=0.8, value_head=head, return_logits=True
        )
        (logprobs.sum() + values.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        monkeypatch.undo()
        return c, logprobs, values, logits, grads

    assert sampling.shared_rows(torch.tensor([[len(p)] for p in prompts])) is not None
    shared, full = run(True), run(False)
    assert torch.equal(shared[0].response_ids, full[0].response_ids)
    assert len(set(shared[0].lengths.tolist())) > 1  # EOS at different steps: padded rows
    assert torch.allclose(shared[0].logprobs, full[0].logprobs, atol=1e-5, rtol=0)
    mask = shared[0].response_mask
    for a, b in zip(shared[1:3], full[1:3], strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    on = mask.bool()  # logits at padding positions are unspecified
    assert torch.allclose(shared[3][on], full[3][on], atol=1e-5, rtol=0)
    assert len(shared[4]) == len(full[4]) > 0
    for a, b in zip(shared[4], full[4], strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_all_padding_columns_are_skipped_without_changing_the_pass(arch):
    """Extra columns that are padding in every row (a narrow chunk of a wide batch) are cut
    before the model runs; outputs come back at the caller's width, zero on the cut part."""
    import torch.nn.functional as F

    from seqmarl.agents.sampling import Completions

    model, tok = tiny_model_and_tokenizer(arch)
    eos_biased(model, tok, bias=2.0)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    c = sample(model, tok, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(1))
    pad, t = tok.pad_token_id, c.response_ids.shape[1]
    wide = Completions(
        F.pad(c.query_ids, (5, 0), value=pad),
        F.pad(c.query_mask, (5, 0)),
        F.pad(c.response_ids, (0, 4), value=pad),
        F.pad(c.response_mask, (0, 4)),
        F.pad(c.logprobs, (0, 4)),
        None,
        c.texts,
    )
    narrow = response_forward(model, c, value_head=head, return_logits=True)
    widened = response_forward(model, wide, value_head=head, return_logits=True)
    on = c.response_mask.bool()  # logits at padding positions are unspecified
    for a, b in zip(narrow, widened, strict=True):
        assert b.shape[1] == t + 4
        assert torch.allclose(b[:, :t][on], a[on], atol=1e-5, rtol=0)
        assert not b[:, t:].any()


def test_a_prompt_past_the_models_positions_is_a_clear_error():
    model, tok = tiny_model_and_tokenizer("gpt2")  # learned positions: 512
    with pytest.raises(ValueError, match="exceeds the model's 512 positions"):
        sample(model, tok, ["x" * 505], max_new_tokens=16)
