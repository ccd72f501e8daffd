"""Head contracts for every head config, and the decoding strategies of the decoders."""
from __future__ import annotations

import functools

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from zoo.cells import GRUCell, LSTMCell, RNNCell
from zoo.compose import config_dir
from zoo.heads.decoding import Decoder, beam_search
from zoo.heads.many_to_one import ManyToOneHead
from zoo.heads.one_to_many import OneToManyDecoder
from zoo.heads.synced import SyncedHead
from zoo.recurrence import Recurrence

V, D = 11, 7


def decoder(condition: str, cell=LSTMCell, layers: int = 1) -> OneToManyDecoder:
    node = OmegaConf.load(config_dir() / "head" / "one_to_many.yaml")
    node.update({"condition": condition, "embed_dim": 8, "dropout": 0.0})
    rec = functools.partial(Recurrence, cell, hidden_size=9, num_layers=layers)
    return instantiate(node)(recurrence=rec, vocab_size=V, cond_dim=D, grid_dim=D, start_id=1, end_id=2, pad_id=0)


def context(condition: str, B: int, requires_grad: bool = False) -> torch.Tensor:
    """What the decoder reads: v (B, D), or a grid of 4 cells (B, 4, D) for attention."""
    shape = (B, 4, D) if condition == "attention" else (B, D)
    return torch.randn(*shape, requires_grad=requires_grad)


CONDITIONS = OneToManyDecoder.conditions


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("cell", [RNNCell, LSTMCell, GRUCell])
def test_one_to_many_shapes_and_gradients(condition, cell):
    torch.manual_seed(0)
    dec = decoder(condition, cell, layers=2)
    v = context(condition, 3, requires_grad=True)
    tokens = torch.randint(3, V, (3, 5))
    logits = dec(v, tokens)
    assert logits.shape == (3, 5, V)
    logits.sum().backward()
    assert v.grad.abs().sum() > 0  # the image reaches the words
    for name, p in dec.named_parameters():
        if name == "embed.weight":
            continue  # only the rows of seen tokens
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("condition", CONDITIONS)
def test_generation_steps_agree_with_teacher_forcing(condition):
    """Feeding the generated tokens back through forward() gives the same scores as generating."""
    torch.manual_seed(1)
    dec = decoder(condition, layers=2).eval()
    v = context(condition, 4)
    out = dec.generate(v, strategy="greedy", max_len=6)
    start = torch.full((4, 1), dec.start_id)
    logits = dec(v, torch.cat([start, out.tokens], 1))[:, :-1]
    logits[..., [dec.pad_id, dec.start_id]] = float("-inf")  # never generated
    assert torch.equal(logits.argmax(-1)[out.tokens != 0], out.tokens[out.tokens != 0])


def test_generation_reads_a_table_of_word_projections_that_follows_the_weights():
    """Generating, layer 0's input projection is a row of a cached (V, G) table; it equals the
    matmul, and an optimizer step (weights changed in place) makes a new table."""
    torch.manual_seed(3)
    dec = decoder("every_step").eval()
    tokens = torch.tensor([1, 5, 0, 7])
    with torch.no_grad():
        fresh = dec.rnn.cells[0].project_input(dec.embed(tokens))
        torch.testing.assert_close(dec._step_input(tokens), fresh)
        table = dec._word_table()
        assert table.shape == (V, dec.rnn.gate_size)
        dec._step_input(tokens)
        assert dec._word_table() is table  # kept while the weights stay
    opt = torch.optim.SGD(dec.parameters(), lr=0.5)
    dec.train()
    dec(context("every_step", 2), torch.randint(3, V, (2, 4))).sum().backward()
    opt.step()
    dec.eval()
    with torch.no_grad():
        torch.testing.assert_close(dec._step_input(tokens), dec.rnn.cells[0].project_input(dec.embed(tokens)))
        assert dec._word_table() is not table


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_strategy_stops_at_end_or_max_len(condition):
    torch.manual_seed(2)
    dec = decoder(condition).eval()
    v = context(condition, 5)
    for strategy in ("greedy", "sample", "beam"):
        g = dec.generate(v, strategy=strategy, max_len=4, beam_size=3, temperature=0.7)
        assert g.tokens.shape[0] == 5 and g.tokens.shape[1] <= 5
        for row, n in zip(g.tokens.tolist(), g.lengths.tolist()):
            assert 0 not in row[:n] and 1 not in row[:n]  # no <PAD>/<START> inside a caption
            assert all(t == 0 for t in row[n + 1:])  # <PAD> after <END>


class ToyDecoder(Decoder):
    """Next-token distributions fixed by the previous token, where greedy is not optimal:
    after <START>, 'a' (p=.6) leads to a flat tail, 'b' (p=.4) to a certain <END>."""

    def __init__(self):
        super().__init__()
        self.start_id, self.end_id, self.pad_id = 1, 2, 0
        table = torch.full((5, 5), 1e-9)
        table[1, 3], table[1, 4] = 0.6, 0.4  # <START> -> a | b
        table[3, 3], table[3, 4], table[3, 2] = 0.34, 0.33, 0.33  # a -> anything
        table[4, 2] = 1.0  # b -> <END>
        table[2, 2] = 1.0
        self.register_buffer("logp", table.log())
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def start(self, context):
        return {"n": context}

    def step(self, tokens, state):
        return self.logp[tokens], state


def test_beam_finds_the_better_sequence_greedy_misses():
    dec = ToyDecoder()
    ctx = torch.zeros(2, 1)
    greedy = dec.generate(ctx, strategy="greedy", max_len=5)
    beam = dec.generate(ctx, strategy="beam", beam_size=2, max_len=5)
    assert greedy.tokens[0, 0].item() == 3  # greedy takes 'a' (0.6) ...
    assert beam.tokens[0].tolist()[:2] == [4, 2]  # beam finds 'b <END>' (0.4 > 0.6 * 0.33)
    assert (beam.scores > greedy.scores).all()


def test_beam_stops_when_every_best_beam_has_ended_with_the_same_result():
    """length_penalty=0: once each row's best beam has ended, no live beam can overtake it, so
    the search stops early; a search that runs on (a negligible length penalty) agrees."""
    dec = ToyDecoder()
    calls = []
    step = dec.step
    dec.step = lambda tokens, state: calls.append(1) or step(tokens, state)
    ctx = torch.zeros(2, 1)
    early = dec.generate(ctx, strategy="beam", beam_size=2, max_len=8)
    n_early = len(calls)
    calls.clear()
    full = dec.generate(ctx, strategy="beam", beam_size=2, max_len=8, length_penalty=1e-9)
    assert n_early < len(calls)
    assert torch.equal(early.tokens, full.tokens[:, :early.tokens.shape[1]])
    torch.testing.assert_close(early.scores, full.scores)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_batched_beam_equals_one_at_a_time(condition):
    """All images and beams in one tensor (per-image state such as the attention grid is not
    reordered: each image's beams stay in one block) = one image at a time."""
    torch.manual_seed(3)
    dec = decoder(condition, GRUCell, layers=2).eval()
    v = context(condition, 6)
    batched = dec.generate(v, strategy="beam", beam_size=4, max_len=7)
    for i in range(6):
        single = dec.generate(v[i:i + 1], strategy="beam", beam_size=4, max_len=7)
        n = single.tokens.shape[1]
        assert batched.tokens[i, :n].tolist() == single.tokens[0].tolist()
        torch.testing.assert_close(batched.scores[i], single.scores[0], rtol=1e-5, atol=1e-5)


def test_beam_of_one_is_greedy():
    torch.manual_seed(4)
    dec = decoder("init").eval()
    v = torch.randn(5, D)
    g = dec.generate(v, strategy="greedy", max_len=6)
    b = dec.generate(v, strategy="beam", beam_size=1, max_len=6)
    assert torch.equal(g.tokens, b.tokens[:, : g.tokens.shape[1]])


def test_sampling_temperature_is_seeded_and_sharpens():
    torch.manual_seed(5)
    dec = decoder("init").eval()
    v = torch.randn(64, D)
    a = dec.generate(v, strategy="sample", temperature=1.0, generator=torch.Generator().manual_seed(0))
    b = dec.generate(v, strategy="sample", temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)
    cold = dec.generate(v, strategy="sample", temperature=1e-4, generator=torch.Generator().manual_seed(1))
    greedy = dec.generate(v, strategy="greedy")
    assert torch.equal(cold.tokens, greedy.tokens[:, : cold.tokens.shape[1]])


def test_unknown_strategy_or_condition_is_a_clear_error():
    with pytest.raises(ValueError, match="greedy, sample or beam"):
        decoder("init").generate(torch.zeros(1, D), strategy="nucleus")
    with pytest.raises(ValueError, match="head.condition"):
        decoder("sideways")
    with pytest.raises(ValueError, match="bidirectional"):
        OneToManyDecoder(functools.partial(Recurrence, LSTMCell, bidirectional=True), V, D)


@pytest.mark.parametrize("pool", ManyToOneHead.pools)
@pytest.mark.parametrize("directions", [1, 2])
def test_many_to_one_pools_only_real_steps(pool, directions):
    torch.manual_seed(6)
    rec = Recurrence(LSTMCell, input_size=4, hidden_size=5, bidirectional=directions == 2)
    head = ManyToOneHead(rec.output_size, 3, directions=directions, pool=pool)
    x = torch.randn(1, 3, 4)
    padded = torch.cat([x, torch.randn(1, 4, 4)], 1)
    alone = head(*(rec(x, torch.tensor([3]))[0], torch.tensor([3])))
    inside = head(rec(padded, torch.tensor([3]))[0], torch.tensor([3]))
    torch.testing.assert_close(alone, inside)
    assert alone.shape == (1, 3)


def test_synced_head_is_per_step():
    head = SyncedHead(5, 3)
    states = torch.randn(2, 4, 5)
    out = head(states)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out[:, 2], head(states[:, 2:3])[:, 0])
