"""Head contracts for every head config (a new head, condition or attention kind is tested by
adding it), with every cell config, and the decoding strategies of the decoders."""
from __future__ import annotations

import functools

import pytest
import torch
from conftest import compose
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from zoo.run.configs import config_dir, group_options
from zoo.heads.decoding import Decoder, beam_search, sample_with_grad
from zoo.heads.many_to_one import ManyToOneHead
from zoo.heads.one_to_many import OneToManyDecoder
from zoo.heads.synced import SyncedHead
from zoo.recurrence import Recurrence

V, D, S = 11, 7, 5  # vocabulary, what the decoder reads, source positions
CELLS = group_options("cell")


def decoder_cases() -> list[tuple[str, dict]]:
    """Every decoder head config with each of its variants: (head, {option: value})."""
    cases = []
    for head in group_options("head"):
        cls = get_object(OmegaConf.load(config_dir() / "head" / f"{head}.yaml")._target_)
        if cls.mode == "one_to_many":
            cases += [(head, {"condition": c}) for c in cls.conditions]
        elif cls.mode == "seq2seq":
            cases += [(head, {"attention": a}) for a in cls.attentions]
    return cases


CASES = decoder_cases()
IDS = [f"{h}-{next(iter(o.values()))}" for h, o in CASES]


@functools.lru_cache(maxsize=None)
def _configs(head: str, options: tuple, cell: str, layers: int):
    cfg = compose(f"head={head}", f"cell={cell}", "cell.hidden_size=9", f"cell.num_layers={layers}",
                  "head.embed_dim=8", "head.dropout=0.0", *(f"head.{k}={v}" for k, v in options))
    return cfg.head, cfg.cell


def decoder(head: str, options: dict, cell: str = "lstm", layers: int = 1) -> Decoder:
    head_cfg, cell_cfg = _configs(head, tuple(options.items()), cell, layers)
    factory, cell_cfg = instantiate(head_cfg), instantiate(cell_cfg)
    sizes = {"cond_dim": D, "grid_dim": D} if factory.func.mode == "one_to_many" else {"memory_dim": D}
    return factory(cell=cell_cfg, vocab_size=V, **sizes, start_id=1, end_id=2, pad_id=0)


def context(dec: Decoder, B: int, requires_grad: bool = False):
    """What the decoder reads: v (B, D) or a grid (B, 4, D) (one_to_many); encoder states,
    their mask and a summary (seq2seq)."""
    if dec.mode == "seq2seq":
        memory = torch.randn(B, S, D, requires_grad=requires_grad)
        mask = torch.arange(S)[None, :] < torch.randint(2, S + 1, (B,))[:, None]
        return memory, mask, torch.randn(B, D)
    return torch.randn(*((B, 4, D) if dec.uses_grid else (B, D)), requires_grad=requires_grad)


def teacher_forced(dec: Decoder, ctx, tokens: torch.Tensor) -> torch.Tensor:
    return dec(*ctx, tokens) if isinstance(ctx, tuple) else dec(ctx, tokens)


def one(ctx, i: int):
    return tuple(c[i:i + 1] for c in ctx) if isinstance(ctx, tuple) else ctx[i:i + 1]


@pytest.mark.parametrize("head,options", CASES, ids=IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_decoder_shapes_and_gradients(head, options, cell):
    torch.manual_seed(0)
    dec = decoder(head, options, cell, layers=2)
    ctx = context(dec, 3, requires_grad=True)
    tokens = torch.randint(3, V, (3, 5))
    logits = teacher_forced(dec, ctx, tokens)
    assert logits.shape == (3, 5, V)
    logits.sum().backward()
    read = ctx[0] if isinstance(ctx, tuple) else ctx
    if options.get("attention") != "none" or dec.mode == "one_to_many":
        assert read.grad.abs().sum() > 0  # what the decoder reads reaches the words
    for name, p in dec.named_parameters():
        if name == "embed.weight":
            continue  # only the rows of seen tokens
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("head,options", CASES, ids=IDS)
def test_generation_steps_agree_with_teacher_forcing(head, options):
    """Feeding the generated tokens back through forward() gives the same scores as generating."""
    torch.manual_seed(1)
    dec = decoder(head, options, layers=2).eval()
    ctx = context(dec, 4)
    out = dec.generate(ctx, strategy="greedy", max_len=6)
    start = torch.full((4, 1), dec.start_id)
    logits = teacher_forced(dec, ctx, torch.cat([start, out.tokens], 1))[:, :-1]
    logits[..., [dec.pad_id, dec.start_id]] = float("-inf")  # never generated
    assert torch.equal(logits.argmax(-1)[out.tokens != 0], out.tokens[out.tokens != 0])


def test_generation_reads_a_table_of_word_projections_that_follows_the_weights():
    """Generating, layer 0's input projection is a row of a cached (V, G) table; it equals the
    matmul, and an optimizer step (weights changed in place) makes a new table."""
    torch.manual_seed(3)
    dec = decoder("one_to_many", {"condition": "every_step"}).eval()
    tokens = torch.tensor([1, 5, 0, 7])
    with torch.no_grad():
        fresh = dec.recurrence.project_input(dec.embed(tokens))
        torch.testing.assert_close(dec._step_input(tokens), fresh)
        table = dec.recurrence.input_table(dec.embed.weight)
        assert table.shape == (V, dec.recurrence.cells[0].gate_size)
        dec._step_input(tokens)
        assert dec.recurrence.input_table(dec.embed.weight) is table  # kept while the weights stay
    opt = torch.optim.SGD(dec.parameters(), lr=0.5)
    dec.train()
    dec(context(dec, 2), torch.randint(3, V, (2, 4))).sum().backward()
    opt.step()
    dec.eval()
    with torch.no_grad():
        torch.testing.assert_close(dec._step_input(tokens), dec.recurrence.project_input(dec.embed(tokens)))
        assert dec.recurrence.input_table(dec.embed.weight) is not table


@pytest.mark.parametrize("head,options", CASES, ids=IDS)
def test_every_strategy_stops_at_end_or_max_len(head, options):
    torch.manual_seed(2)
    dec = decoder(head, options).eval()
    ctx = context(dec, 5)
    for strategy in ("greedy", "sample", "beam"):
        g = dec.generate(ctx, strategy=strategy, max_len=4, beam_size=3, temperature=0.7)
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


@pytest.mark.parametrize("head,options", CASES, ids=IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_batched_beam_equals_one_at_a_time(head, options, cell):
    """All inputs and beams in one tensor (per-input state such as the attention grid is not
    reordered: each input's beams stay in one block) = one input at a time."""
    torch.manual_seed(3)
    dec = decoder(head, options, cell, layers=2).eval()
    ctx = context(dec, 6)
    batched = dec.generate(ctx, strategy="beam", beam_size=4, max_len=7)
    for i in range(6):
        single = dec.generate(one(ctx, i), strategy="beam", beam_size=4, max_len=7)
        n = single.tokens.shape[1]
        assert batched.tokens[i, :n].tolist() == single.tokens[0].tolist()
        torch.testing.assert_close(batched.scores[i], single.scores[0], rtol=1e-5, atol=1e-5)


def test_beam_of_one_is_greedy():
    torch.manual_seed(4)
    dec = decoder("one_to_many", {"condition": "init"}).eval()
    v = torch.randn(5, D)
    g = dec.generate(v, strategy="greedy", max_len=6)
    b = dec.generate(v, strategy="beam", beam_size=1, max_len=6)
    assert torch.equal(g.tokens, b.tokens[:, : g.tokens.shape[1]])


def test_sampling_temperature_is_seeded_and_sharpens():
    torch.manual_seed(5)
    dec = decoder("one_to_many", {"condition": "init"}).eval()
    v = torch.randn(64, D)
    a = dec.generate(v, strategy="sample", temperature=1.0, generator=torch.Generator().manual_seed(0))
    b = dec.generate(v, strategy="sample", temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)
    cold = dec.generate(v, strategy="sample", temperature=1e-4, generator=torch.Generator().manual_seed(1))
    greedy = dec.generate(v, strategy="greedy")
    assert torch.equal(cold.tokens, greedy.tokens[:, : cold.tokens.shape[1]])


def test_unknown_strategy_or_condition_is_a_clear_error():
    with pytest.raises(ValueError, match="greedy, sample or beam"):
        decoder("one_to_many", {"condition": "init"}).generate(torch.zeros(1, D), strategy="nucleus")
    with pytest.raises(ValueError, match="head.condition"):
        OneToManyDecoder(instantiate(compose("cell=lstm").cell), V, D, condition="sideways")
    with pytest.raises(ValueError, match="bidirectional"):
        OneToManyDecoder(instantiate(compose("cell=lstm", "cell.bidirectional=true").cell), V, D)


@pytest.mark.parametrize("pool", ManyToOneHead.pools)
@pytest.mark.parametrize("directions", [1, 2])
def test_many_to_one_pools_only_real_steps(pool, directions):
    torch.manual_seed(6)
    from zoo.cells import LSTMCell

    rec = Recurrence(LSTMCell, input_size=4, hidden_size=5, bidirectional=directions == 2)
    head = ManyToOneHead(rec.output_size, 3, directions=directions, pool=pool)
    x = torch.randn(1, 3, 4)
    padded = torch.cat([x, torch.randn(1, 4, 4)], 1)
    alone = head(rec(x, torch.tensor([3])).outputs, torch.tensor([3]))
    inside = head(rec(padded, torch.tensor([3])).outputs, torch.tensor([3]))
    torch.testing.assert_close(alone, inside)
    assert alone.shape == (1, 3)


def test_synced_head_is_per_step():
    head = SyncedHead(5, 3)
    states = torch.randn(2, 4, 5)
    out = head(states)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out[:, 2], head(states[:, 2:3])[:, 0])


def _ngrams(row: list[int], n: int) -> list[tuple]:
    return [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]


@pytest.mark.parametrize("head,options", CASES[:1] + [c for c in CASES if c[1].get("attention") == "additive"],
                         ids=lambda c: str(c))
def test_no_repeat_ngram_and_min_length_hold_for_every_strategy_and_batched_beam_agrees(head, options):
    """decode.no_repeat_ngram=n: no n-gram twice in an output; decode.min_length: no <END> before
    that many tokens; inside the batched beam, which still equals one input at a time."""
    torch.manual_seed(9)
    dec = decoder(head, options).eval()
    ctx = context(dec, 8)
    def outputs(**rules):
        return {s: dec.generate(ctx, strategy=s, max_len=12, beam_size=3, generator=torch.Generator().manual_seed(0),
                                **rules) for s in ("greedy", "sample", "beam")}
    free, ruled = outputs(), outputs(no_repeat_ngram=2, min_length=4)
    repeats = lambda g: sum(len(_ngrams(r[:n], 2)) - len(set(_ngrams(r[:n], 2))) for r, n in zip(g.tokens.tolist(), g.lengths.tolist()))
    assert sum(repeats(g) for g in free.values()) > 0  # an untrained decoder repeats itself ...
    for s, g in ruled.items():
        assert repeats(g) == 0, s  # ... and not with the rule
        assert (g.lengths >= 4).all(), (s, g.lengths)
    beam = ruled["beam"]
    for i in range(8):
        single = dec.generate(one(ctx, i), strategy="beam", max_len=12, beam_size=3, no_repeat_ngram=2, min_length=4)
        n = single.tokens.shape[1]
        assert beam.tokens[i, :n].tolist() == single.tokens[0].tolist()
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        dec.generate(ctx, no_repeat_ngram=1)


@pytest.mark.parametrize("head,options", CASES[:1], ids=lambda c: str(c))
def test_a_suppressed_token_is_never_generated_by_any_strategy(head, options):
    """decode.suppress (a captioner's <UNK>): a token the untrained decoder writes often never
    appears with the rule, in greedy, sampling, beam and the sampling self-critical training uses."""
    torch.manual_seed(9)
    dec = decoder(head, options).eval()
    ctx = context(dec, 8)
    run = lambda **r: {s: dec.generate(ctx, strategy=s, max_len=12, beam_size=3,
                                       generator=torch.Generator().manual_seed(0), **r).tokens for s in ("greedy", "sample", "beam")}
    free = run()
    favourite = torch.cat([t.flatten() for t in free.values()]).bincount().argmax().item()  # not <PAD>: ends are rare
    assert favourite not in (dec.pad_id, dec.start_id, dec.end_id)
    for s, tokens in run(suppress=(favourite,)).items():
        assert favourite not in tokens.tolist() and (tokens != dec.pad_id).any(), s
    sampled = sample_with_grad(dec, ctx, n=3, max_len=12, suppress=[favourite])
    assert favourite not in sampled.tokens.flatten().tolist()


def test_sampling_with_grad_scores_are_the_log_probabilities_teacher_forcing_gives():
    """The self-critical policy gradient differentiates these scores: they must be each sampled
    output's log-probability (what teacher forcing gives the same tokens), with gradients."""
    from zoo.heads.decoding import sample_with_grad

    torch.manual_seed(11)
    dec = decoder("one_to_many", {"condition": "every_step"}).eval()
    v = context(dec, 3)
    out = sample_with_grad(dec, v, n=2, max_len=6, min_length=2)
    assert out.tokens.shape[0] == 6 and out.scores.requires_grad and (out.lengths >= 2).all()
    tokens = torch.cat([torch.full((6, 1), dec.start_id), out.tokens], 1)
    logp = torch.log_softmax(teacher_forced(dec, v.repeat_interleave(2, 0), tokens[:, :-1]).masked_fill(
        torch.zeros(V, dtype=torch.bool).index_fill(0, torch.tensor([dec.pad_id, dec.start_id]), True), float("-inf")), -1)
    picked = logp.gather(2, out.tokens.unsqueeze(2)).squeeze(2)
    real = torch.arange(out.tokens.shape[1])[None, :] <= out.lengths[:, None]  # the words and <END>
    real &= out.tokens != dec.pad_id
    # (min_length bans <END> at the first two steps: the sample's distribution there is renormalised)
    expected = picked.masked_fill(~real, 0.0)
    early = torch.log_softmax(teacher_forced(dec, v.repeat_interleave(2, 0), tokens[:, :-1]).masked_fill(
        torch.zeros(V, dtype=torch.bool).index_fill(0, torch.tensor([dec.pad_id, dec.start_id, dec.end_id]), True),
        float("-inf")), -1).gather(2, out.tokens.unsqueeze(2)).squeeze(2)
    expected[:, :2] = early[:, :2]
    torch.testing.assert_close(out.scores, expected.sum(1), rtol=1e-5, atol=1e-5)
