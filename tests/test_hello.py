"""The lecture's example: a vanilla RNN over the vocabulary [h, e, l, o] learns "hello"."""
from __future__ import annotations

import torch

from zoo.cells import RNNCell
from zoo.heads.synced import SyncedHead
from zoo.recurrence import Recurrence

VOCAB = ["h", "e", "l", "o"]


def one_hot(text: str) -> torch.Tensor:
    return torch.eye(4)[[VOCAB.index(c) for c in text]]


def test_vanilla_rnn_learns_hello():
    torch.manual_seed(0)
    rnn = Recurrence(RNNCell, input_size=4, hidden_size=8)  # h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)
    head = SyncedHead(8, 4)  # y_t = W_hy h_t
    x = one_hot("hell").unsqueeze(0)  # (1, 4, 4)
    target = torch.tensor([[VOCAB.index(c) for c in "ello"]])
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(150):  # backpropagation through time over the 4 steps
        logits = head(rnn(x).outputs)  # (1, 4, 4)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, 4), target.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    predicted = "".join(VOCAB[i] for i in head(rnn(x).outputs).argmax(-1)[0])
    assert predicted == "ello"  # the two "l" inputs get different outputs: only the state tells them apart
    assert loss.item() < 0.05

    # and generation: feed each prediction back in, starting from "h"
    state, ch, out = rnn.init_state(1), "h", ""
    for _ in range(4):
        h, state, _ = rnn.step(one_hot(ch), state)
        ch = VOCAB[head(h.unsqueeze(1))[0, 0].argmax()]
        out += ch
    assert out == "ello"


def test_without_recurrence_hello_is_impossible():
    """Control: with W_hh held at zero the two 'l' steps look alike, so 'ello' cannot be fitted."""
    torch.manual_seed(0)
    rnn = Recurrence(RNNCell, input_size=4, hidden_size=8)
    head = SyncedHead(8, 4)
    with torch.no_grad():
        rnn.cells[0].W_hh.zero_()
    rnn.cells[0].W_hh.requires_grad_(False)
    x = one_hot("hell").unsqueeze(0)
    target = torch.tensor([[VOCAB.index(c) for c in "ello"]])
    opt = torch.optim.Adam([p for p in list(rnn.parameters()) + list(head.parameters()) if p.requires_grad], lr=0.05)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(head(rnn(x).outputs).view(-1, 4), target.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() > 0.3  # the 'l' -> 'l' and 'l' -> 'o' steps cannot both be right
