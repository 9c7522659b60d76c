"""Every registered architecture: shapes, gradients, TorchScript, config validation, rebuild from a checkpoint."""

import io

import pytest
import torch

import models
from models import ByteTokenizer, TransformerConfig, build_model, make_config

TINY = {
    "regression": {"n_features": 3, "n_targets": 2},
    "mlp": {"n_features": 3, "n_outputs": 4, "hidden_sizes": [8, 8], "dropout": 0.1},
    "transformer": {"max_len": 12, "d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32, "num_classes": 3,
                    "ngram_buckets": 64},  # (the built-in recipe has none: test_models' other cases cover that)
    "bag_of_tokens": {"max_len": 12, "d_model": 16, "num_classes": 3},
}


def example_inputs(name: str, config, batch: int = 5) -> torch.Tensor:
    if models.input_kind(name) == "features":
        return torch.randn(batch, config.n_features)  # (B, F)
    ids = torch.randint(4, config.vocab_size, (batch, config.max_len))  # (B, L)
    ids[1, 3:] = 0  # one shorter, padded row
    return ids


@pytest.fixture(params=sorted(models.REGISTRY))
def name(request) -> str:
    return request.param


def test_forward_shape(name):
    config = make_config(name, TINY[name])
    out = build_model(name, config).eval()(example_inputs(name, config))
    outputs = getattr(config, "n_targets", None) or getattr(config, "n_outputs", None) or config.num_classes
    assert out.shape == (5, outputs)
    assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient(name):
    config = make_config(name, TINY[name])
    model = build_model(name, config).train()
    model(example_inputs(name, config)).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # the padding row of an embedding never gets a gradient, by design
    missing = [n for n in missing if "token_embedding" not in n]
    assert missing == []


def test_torchscript_matches_eager(name):
    config = make_config(name, TINY[name])
    model = build_model(name, config).eval()
    x = example_inputs(name, config)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_rebuilds_from_checkpoint_with_weights_only(name):
    config = make_config(name, TINY[name])
    model = build_model(name, config).eval()
    buffer = io.BytesIO()
    torch.save({"model_config": models.config_to_dict(config), "state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    rebuilt = build_model(name, make_config(name, state["model_config"]))
    rebuilt.load_state_dict(state["state_dict"])
    x = example_inputs(name, config)
    torch.testing.assert_close(rebuilt.eval()(x), model(x))


@pytest.mark.parametrize("token_model", ["transformer", "bag_of_tokens"])
def test_extra_padding_changes_nothing(token_model):
    config = make_config(token_model, TINY[token_model])
    model = build_model(token_model, config).eval()
    ids = torch.randint(4, config.vocab_size, (3, 5))  # (B, 5)
    padded = torch.cat([ids, torch.zeros(3, 7, dtype=torch.long)], dim=1)  # (B, 12)
    torch.testing.assert_close(model(padded), model(ids))


def test_transformer_is_order_sensitive():
    model = build_model("transformer", make_config("transformer", TINY["transformer"])).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert not torch.allclose(model(ids), model(ids.flip(1)))


def test_transformer_accepts_any_length_up_to_max_len():
    config = make_config("transformer", TINY["transformer"])
    model = build_model("transformer", config).eval()
    for length in (1, 2, config.max_len):
        assert model(torch.randint(4, config.vocab_size, (2, length))).shape == (2, 3)


def test_n_gram_embeddings_mark_a_texts_ends():
    from models.transformer import NgramEmbedding

    ngrams = NgramEmbedding(vocab_size=260, buckets=4096, d_model=8)
    last, followed = ngrams(torch.tensor([[5, 6]]))[0, 1], ngrams(torch.tensor([[5, 6, 7]]))[0, 1]
    assert not torch.allclose(last, followed)  # byte 6 at the end is not byte 6 before another
    first, after_one = ngrams(torch.tensor([[6, 7]]))[0, 0], ngrams(torch.tensor([[5, 6, 7]]))[0, 1]
    assert not torch.allclose(first, after_one)  # nor byte 6 at the start
    # An n-gram never trained on starts small (fastText's ±1/d): on a new text it adds little beside a byte's
    # embedding, where nn.Embedding's N(0, 1) start made noise as large as a learnt one (first names: 1.4 points)
    assert ngrams.embedding.weight.abs().max() <= 1 / 8


def test_config_error_names_every_bad_field():
    with pytest.raises(ValueError) as excinfo:
        TransformerConfig(d_model=30, n_heads=4, num_classes=1, dropout=1.5, ngram_buckets=-1)
    message = str(excinfo.value)
    for field in ("d_model (30) must be divisible by n_heads (4)", "num_classes", "dropout", "ngram_buckets"):
        assert field in message
    with pytest.raises(ValueError, match="ngram_buckets needs vocab_size <= 1024"):
        TransformerConfig(vocab_size=5000, ngram_buckets=64)


def test_mlp_config_rejects_unknown_activation_and_empty_layers():
    with pytest.raises(ValueError, match="activation.*hidden_sizes|hidden_sizes.*activation"):
        make_config("mlp", {"activation": "tanh", "hidden_sizes": []})


def test_make_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown MLPConfig fields \\['widths'\\]"):
        make_config("mlp", {"widths": [3]})


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'cnn'"):
        make_config("cnn", {})


def test_byte_tokenizer_round_trip_and_reserved_ids():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode("héllo")
    assert min(ids) >= tokenizer.offset and max(ids) < tokenizer.vocab_size
    assert tokenizer.decode(ids) == "héllo"
    assert TransformerConfig().vocab_size == tokenizer.vocab_size


def test_text_columns_join_with_a_separator_and_the_longest_is_cut_first():
    tokenizer, sep = ByteTokenizer(), ByteTokenizer.specials["<sep>"]
    a, b = tokenizer.encode("subject"), tokenizer.encode("a much longer body")
    assert tokenizer.encode_columns(["subject", "", "a much longer body"]) == [*a, sep, sep, *b]  # each keeps its place
    assert tokenizer.encode_columns(["subject"], 4) == a[:4]  # one column: its first max_len bytes, as before
    # the longest cut first: a long first column does not crowd out a short second one
    assert tokenizer.encode_columns(["a much longer body", "subject"], 16) == [*b[:8], sep, *a]
    # 25 bytes and a separator into 12: both cut to a common 5, and the one token left over goes to the first
    assert tokenizer.encode_columns(["subject", "a much longer body"], 12) == [*a[:6], sep, *b[:5]]
    assert len(tokenizer.encode_columns(["x" * 40, "y" * 3, "z" * 90], 32)) == 32
