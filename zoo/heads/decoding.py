"""Autoregressive decoding shared by every decoder head: greedy, sampling, batched beam search.

A decoder implements two methods and inherits ``generate``:

    start(context) -> state                 # a nested dict/list/tuple of tensors, batch on dim 0
    step(tokens (N,), state) -> logits (N, V), state

Beam search keeps all images (sentences) and all beams of a batch in one tensor of
B * K rows, and reorders every tensor of the state with one ``index_select`` per step.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo.recurrence import map_state

Strategy = Literal["greedy", "sample", "beam"]


@dataclass
class Generated:
    tokens: Tensor  # (B, L) ids, <PAD> after <END>
    lengths: Tensor  # (B,) tokens before <END> (or all L when it never ended)
    scores: Tensor  # (B,) total log-probability of the tokens, <END> included


class Decoder(nn.Module):
    start_id: int
    end_id: int
    pad_id: int
    #: keys of a dict state that are fixed per input (the image term, the attention memory): beam
    #: search keeps each input's beams in one block of rows, so these need no reordering
    static_state: tuple[str, ...] = ()

    def start(self, context: Any) -> Any:
        raise NotImplementedError

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(
        self,
        context: Any,
        *,
        strategy: Strategy = "greedy",
        max_len: int = 20,
        temperature: float = 1.0,
        beam_size: int = 3,
        length_penalty: float = 0.0,
        no_repeat_ngram: int = 0,
        min_length: int = 0,
        suppress: tuple[int, ...] | list[int] = (),
        generator: torch.Generator | None = None,
    ) -> Generated:
        """``no_repeat_ngram=n`` (> 1): no n-gram appears twice in an output; ``min_length``: no
        <END> before that many tokens; ``suppress``: ids never generated (a captioner's <UNK>).
        All hold for every strategy (inside the batched beam)."""
        if no_repeat_ngram == 1 or no_repeat_ngram < 0 or min_length < 0:
            raise ValueError(f"decode.no_repeat_ngram must be 0 (off) or >= 2, decode.min_length >= 0; got "
                             f"{no_repeat_ngram}, {min_length}")
        state = self.start(context)
        rules = Rules(self.end_id, no_repeat_ngram, min(min_length, max_len), tuple(suppress))
        if strategy == "beam":
            return beam_search(self, state, beam_size=beam_size, max_len=max_len, length_penalty=length_penalty,
                               rules=rules)
        if strategy in ("greedy", "sample"):
            return _one_path(self, state, max_len, sample=strategy == "sample", temperature=temperature,
                             generator=generator, rules=rules)
        raise ValueError(f"decoding strategy must be greedy, sample or beam, got {strategy!r}")


@dataclass
class Rules:
    """What an output may not do, applied to the next token's log-probabilities (R, V) given the
    tokens so far (R, t): repeat an n-gram, end before ``min_length`` tokens, or write a
    ``suppressed`` token."""

    end_id: int
    no_repeat_ngram: int = 0
    min_length: int = 0
    suppressed: tuple[int, ...] = ()

    def apply(self, logp: Tensor, seqs: Tensor) -> Tensor:
        t = seqs.shape[1]
        if self.suppressed:
            logp = logp.index_fill(1, torch.tensor(self.suppressed, device=logp.device), float("-inf"))
        if t < self.min_length:  # (not in place: sampling for a policy gradient backpropagates through logp)
            logp = logp.index_fill(1, torch.tensor([self.end_id], device=logp.device), float("-inf"))
        n = self.no_repeat_ngram
        if n and t >= n - 1 and t >= 1:
            # every earlier n-gram whose first n-1 tokens are the last n-1 tokens bans its n-th token
            windows = seqs.unfold(1, n, 1) if t >= n else seqs.new_empty(seqs.shape[0], 0, n)  # (R, W, n)
            prefix = seqs[:, t - (n - 1):] if n > 1 else seqs[:, :0]  # (R, n-1)
            match = (windows[:, :, :-1] == prefix.unsqueeze(1)).all(2)  # (R, W)
            banned = torch.zeros_like(logp).scatter_add_(1, windows[:, :, -1], match.to(logp.dtype)) > 0
            logp = logp.masked_fill(banned, float("-inf"))
        return logp


def sample_with_grad(dec: Decoder, context: Any, *, n: int = 1, max_len: int = 20, temperature: float = 1.0,
                     min_length: int = 0, no_repeat_ngram: int = 0, suppress: tuple[int, ...] | list[int] = ()) -> Generated:
    """``n`` sampled outputs per input (rows input-major: input 0's n samples first), with the
    scores (the sum of each output's token log-probabilities) differentiable: what a policy
    gradient (self-critical training) trains with."""
    state = dec.start(context)
    if n > 1:
        state = map_state(lambda s: s.repeat_interleave(n, dim=0), state)
    return _one_path(dec, state, max_len, sample=True, temperature=temperature, generator=None,
                     rules=Rules(dec.end_id, no_repeat_ngram, min(min_length, max_len), tuple(suppress)))


def decode_options(*, beam: int | None = None, greedy: bool = False, sample: bool = False,
                   temperature: float | None = None, **_: Any) -> dict:
    """Decoding options from a command line's flags (``--beam 5``, ``--greedy``, ``--sample
    --temperature 0.7``): only what was given, over the model's configured decoding."""
    if sample:
        return {"strategy": "sample", "temperature": temperature if temperature is not None else 1.0}
    if greedy:
        return {"strategy": "greedy"}
    if beam:
        return {"strategy": "beam", "beam_size": beam}
    return {}


def _next_logp(dec: Decoder, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
    """Log-probabilities of the next token; <PAD> and <START> are never generated."""
    logits, state = dec.step(tokens, state)
    logits = logits.float()
    logits[:, [dec.pad_id, dec.start_id]] = float("-inf")
    return torch.log_softmax(logits, dim=-1), state


def _device(dec: nn.Module) -> torch.device:
    return next(itertools.chain(dec.parameters(), dec.buffers())).device


def _batch_size(state: Any) -> int:
    sizes = []
    map_state(lambda t: sizes.append(t.shape[0]) or t, state)
    return sizes[0]


def _finish(tokens: Tensor, end_id: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad everything after the first <END>; lengths exclude it."""
    is_end = tokens == end_id
    ended = is_end.cumsum(1) > 0
    after = ended & ~(is_end & (is_end.cumsum(1) == 1))
    tokens = tokens.masked_fill(after, pad_id)
    lengths = torch.where(is_end.any(1), is_end.float().argmax(1), torch.full_like(tokens[:, 0], tokens.shape[1]))
    return tokens, lengths


def _one_path(dec: Decoder, state: Any, max_len: int, *, sample: bool, temperature: float,
              generator: torch.Generator | None, rules: Rules | None = None) -> Generated:
    B = _batch_size(state)
    device = _device(dec)
    tokens = torch.full((B,), dec.start_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    score = torch.zeros(B, device=device)
    out = []
    for _ in range(max_len + 1):  # + 1: room for <END> after max_len words
        logp, state = _next_logp(dec, tokens, state)
        if rules is not None:
            logp = rules.apply(logp, torch.stack(out, 1) if out else tokens.new_empty(B, 0))
        if sample:
            if temperature <= 0:
                raise ValueError("sampling temperature must be > 0 (use strategy=greedy for argmax)")
            # the distribution sampled from, renormalised after the rules' bans: its log-probabilities
            # are the scores (what a policy gradient differentiates)
            logp = torch.log_softmax(logp / temperature, -1)
            tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
        else:
            tokens = logp.argmax(-1)
        score = score + torch.where(done, 0.0, logp.gather(1, tokens[:, None]).squeeze(1))
        tokens = tokens.masked_fill(done, dec.pad_id)
        out.append(tokens)
        done = done | (tokens == dec.end_id)
        if done.all():
            break
    seqs, lengths = _finish(torch.stack(out, 1), dec.end_id, dec.pad_id)
    return Generated(seqs, lengths, score)


def _reorder(state: Any, rows: Tensor, static: tuple[str, ...]) -> Any:
    """Every state tensor's rows in the order of the surviving beams, except the static entries."""
    pick = lambda t: t.index_select(0, rows)
    if isinstance(state, dict) and static:
        return {k: v if k in static else map_state(pick, v) for k, v in state.items()}
    return map_state(pick, state)


def beam_search(dec: Decoder, state: Any, *, beam_size: int, max_len: int, length_penalty: float = 0.0,
                rules: Rules | None = None) -> Generated:
    """Batched beam search. Finished beams keep their score; the best beam per row is chosen by
    ``score / length ** length_penalty`` (0: plain log-probability; 1: per-token average).

    The first step runs on the B rows once (all beams start equal), not on B * K copies. With
    ``length_penalty=0`` the search stops as soon as every row's best beam has ended: scores
    only fall as a beam grows, so no live beam can overtake it (the result is the same)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B, K = _batch_size(state), beam_size
    device = _device(dec)
    tokens = torch.full((B,), dec.start_id, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first
    done = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, dtype=torch.long, device=device)
    seqs = torch.empty(B * K, 0, dtype=torch.long, device=device)
    base = (torch.arange(B, device=device) * K).unsqueeze(1)  # (B, 1)
    for t in range(max_len + 1):
        logp, state = _next_logp(dec, tokens, state)  # (B*K, V); the first step (B, V)
        if t == 0:
            state = map_state(lambda s: s.repeat_interleave(K, dim=0), state)
            logp = logp.repeat_interleave(K, dim=0)
        V = logp.shape[1]
        if rules is not None:
            logp = rules.apply(logp, seqs)
        # a finished beam can only "emit" <PAD> at no cost, so it survives unchanged
        logp = logp.masked_fill(done[:, None], float("-inf"))
        logp[:, dec.pad_id] = torch.where(done, 0.0, float("-inf"))
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)
        scores, flat = cand.topk(K, dim=1)  # (B, K), best first
        beam, tok = flat // V, flat % V
        rows = (base + beam).view(-1)  # (B*K,) rows of the previous step
        state = _reorder(state, rows, dec.static_state)
        tokens = tok.view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), tokens[:, None]], dim=1)
        was_done = done.index_select(0, rows)
        lengths = lengths.index_select(0, rows) + (~was_done).long()
        done = was_done | (tokens == dec.end_id)
        if done.all() or (not length_penalty and bool(done.view(B, K)[:, 0].all())):
            break
    norm = scores / lengths.view(B, K).clamp(min=1).float() ** length_penalty if length_penalty else scores
    best = norm.argmax(1)  # (B,)
    rows = base.squeeze(1) + best
    out, out_len = _finish(seqs.index_select(0, rows), dec.end_id, dec.pad_id)
    return Generated(out, out_len, scores.gather(1, best[:, None]).squeeze(1))
