"""Heads: recurrent states -> output, one per RNN mode (``mode`` names it).

    many_to_one   states (B, T, H), lengths (B,)      -> logits (B, C)
    synced        states (B, T, H)                    -> logits (B, T, C)
    one_to_many   condition v (B, D), tokens (B, T)   -> logits (B, T, V); generate(v) -> tokens
    seq2seq       encoder states (B, S, H), mask, final state; tokens -> logits; generate

Decoders (one_to_many, seq2seq) own their recurrence, since generating steps it, and share
greedy, sampling and batched beam search through :class:`zoo.heads.decoding.Decoder`.
"""
