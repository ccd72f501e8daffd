"""Cell and recurrence contracts, for every cell config in conf/cell/ (a new cell is tested by adding its YAML)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from conftest import compose
from hydra.utils import instantiate

from zoo.cells import Cell
from zoo.run.configs import group_options
from zoo.recurrence import Constant, Recurrence, StepInput, build

CELLS = group_options("cell")


def make(name: str, extra_size: int = 0, **over) -> Recurrence:
    """The recurrence ``cell=<name>`` configures (hidden size 6, over 5 inputs), in float64."""
    cell = compose(f"cell={name}", "cell.hidden_size=6", *(f"cell.{k}={v}" for k, v in over.items())).cell
    return build(instantiate(cell), input_size=5, extra_size=extra_size).double()


def flat(state) -> torch.Tensor:
    return torch.cat([t.flatten() for s in state for t in (s if isinstance(s, tuple) else (s,))])


def test_every_cell_config_is_found():
    assert {"rnn", "lstm", "gru"} <= set(CELLS)


@pytest.mark.parametrize("name", CELLS)
def test_cell_one_step_contract(name):
    rec = make(name)
    cell: Cell = rec.cells[0]
    x = torch.randn(4, 5, dtype=torch.double)
    h, state = cell(x)  # zero state by default
    assert h.shape == (4, 6)
    assert torch.equal(cell.output(state), h)
    h2, _ = cell(x, state)
    assert h2.shape == (4, 6) and not torch.allclose(h, h2)  # the state matters


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_fused_equals_loop_outputs_and_gradients(name, layers, bidirectional):
    torch.manual_seed(0)
    rec = make(name, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(3, 7, 5, dtype=torch.double)
    lengths = torch.tensor([7, 3, 5])
    for lens in (None, lengths):
        results = []
        for fused in (True, False):
            rec.use_fused = fused
            out, state, _ = rec(x, lens)
            grads = torch.autograd.grad((out ** 2).sum() + flat(state).sum(), list(rec.parameters()))
            results.append((out, flat(state), grads))
        (o1, s1, g1), (o2, s2, g2) = results
        assert o1.shape == (3, 7, 6 * (2 if bidirectional else 1))
        torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(s1, s2, rtol=1e-10, atol=1e-10)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", CELLS)
def test_every_parameter_gets_a_gradient(name):
    rec = make(name, num_layers=2, bidirectional=True)
    out = rec(torch.randn(2, 4, 5, dtype=torch.double)).outputs
    out.sum().backward()
    for pname, p in rec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_padding_does_not_change_an_example(name, bidirectional, fused):
    """An example gives the same outputs and final state alone or padded inside a batch."""
    torch.manual_seed(1)
    rec = make(name, num_layers=2, bidirectional=bidirectional, fused=fused)
    short = torch.randn(1, 3, 5, dtype=torch.double)
    batch = torch.cat([torch.randn(1, 6, 5, dtype=torch.double),
                       torch.cat([short, torch.full((1, 3, 5), 9.0, dtype=torch.double)], 1)])
    out_alone, s_alone, _ = rec(short, torch.tensor([3]))
    out_batch, s_batch, _ = rec(batch, torch.tensor([6, 3]))
    torch.testing.assert_close(out_batch[1, :3], out_alone[0])
    assert out_batch[1, 3:].abs().max() == 0  # padding gives zeros
    alone = flat(s_alone)
    torch.testing.assert_close(flat([tuple(t[1:2] for t in s) if isinstance(s, tuple) else s[1:2] for s in s_batch]), alone)


@pytest.mark.parametrize("name", CELLS)
def test_extra_input_equals_a_wider_input(name):
    """W_xh x + W_ih v (the extra input) is the same as one cell reading [x; v] with [W_xh, W_ih]
    (the math behind captioning's every_step), on every path."""
    torch.manual_seed(2)
    rec = make(name, extra_size=4)
    cell = rec.cells[0]
    v = torch.randn(3, 4, dtype=torch.double)
    x = torch.randn(3, 5, 5, dtype=torch.double)
    wide = build(instantiate(compose(f"cell={name}", "cell.hidden_size=6").cell), input_size=9).double()
    with torch.no_grad():
        for (n, p), q in zip(wide.cells[0].named_parameters(), (t for k, t in cell.named_parameters() if k != "W_ih")):
            p.copy_(torch.cat([q, cell.W_ih], 1) if n == "W_xh" else q)
    ref = wide(torch.cat([x, v[:, None].expand(3, 5, 4)], 2)).outputs
    for fused in (True, False):
        rec.use_fused = fused
        torch.testing.assert_close(rec(x, extra=Constant(v)).outputs, ref)


class _Feedback(StepInput):
    """An input computed from the previous output: u_t = tanh(h_{t-1} M), and it records u_t."""

    def __init__(self, M):
        self.M = M

    def at(self, h_prev):
        u = torch.tanh(h_prev @ self.M)
        return u, {"u": u}


@pytest.mark.parametrize("name", CELLS)
def test_an_input_from_the_state_is_what_stepping_by_hand_gives(name):
    """The loop calls a StepInput with h_{t-1} at every step and stacks what it records: the same
    as stepping the cells one step at a time and computing u_t by hand; padding stays out."""
    torch.manual_seed(8)
    rec = make(name, extra_size=3, num_layers=2)
    M = torch.randn(6, 3, dtype=torch.double, requires_grad=True)
    x, lengths = torch.randn(2, 4, 5, dtype=torch.double), torch.tensor([4, 2])
    run = rec(x, lengths, extra=_Feedback(M))
    assert run.outputs.shape == (2, 4, 6) and run.trace["u"].shape == (2, 4, 3)
    state = rec.init_state(2, dtype=torch.double)
    for t in range(4):
        u = torch.tanh(rec.top(state) @ M)
        torch.testing.assert_close(run.trace["u"][:, t], u) if t < 2 else torch.testing.assert_close(run.trace["u"][0, t], u[0])
        h, new, _ = rec.step(x[:, t], state, _Feedback(M))
        alive = (lengths > t).unsqueeze(1)
        state = [tuple(torch.where(alive, a, b) for a, b in zip(n, s)) if isinstance(n, tuple) else torch.where(alive, n, s)
                 for n, s in zip(new, state)]
        torch.testing.assert_close(run.outputs[:, t], h * alive)
    torch.testing.assert_close(flat(run.state), flat(state))
    run.outputs.sum().backward()
    assert M.grad.abs().sum() > 0 and rec.cells[0].W_ih.grad.abs().sum() > 0  # the feedback is trained through


@pytest.mark.parametrize("name", CELLS)
def test_step_equals_forward(name):
    rec = make(name, num_layers=2)
    x = torch.randn(2, 4, 5, dtype=torch.double)
    out, final, _ = rec(x)
    state = rec.init_state(2, dtype=torch.double)
    for t in range(4):
        h, state, _ = rec.step(x[:, t], state)
        torch.testing.assert_close(h, out[:, t])
    torch.testing.assert_close(flat(state), flat(final))


def test_the_config_route_has_one_name():
    """cell=lstm is the cell and how it runs: cell.forget_bias and cell.num_layers side by side."""
    rec = build(instantiate(compose("cell=lstm", "cell.forget_bias=1.0", "cell.num_layers=2", "cell.hidden_size=8").cell),
                input_size=3)
    assert rec.num_layers == 2 and rec.hidden_size == 8 and all(c.forget_bias == 1.0 for c in rec.cells)
    assert build(instantiate(compose("cell=gru").cell), input_size=3, bidirectional=True).num_directions == 2


def test_a_cell_is_one_step():
    """What a cell author writes: step (and init_state); the loop, layers, directions, padding
    and generation come from the recurrence. minGRU is such a cell: no W_hh, no torch kernel."""
    from zoo.cells import MinGRUCell

    own = {k for k, v in vars(MinGRUCell).items() if callable(v) and not k.startswith("__")}
    assert own == {"step"} and not hasattr(MinGRUCell, "fused_kernel") and not hasattr(MinGRUCell, "step_backward")
    rec = Recurrence(MinGRUCell, input_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    assert {n.split(".")[-1] for n, _ in rec.named_parameters()} == {"W_xh", "b"}
    out = rec(torch.randn(3, 4, 5), torch.tensor([4, 1, 3])).outputs
    assert out.shape == (3, 4, 12) and out[1, 1:].abs().max() == 0


def test_vanilla_cell_is_the_lecture_formula():
    rec = make("rnn", extra_size=3)
    cell = rec.cells[0]
    assert {n for n, _ in cell.named_parameters()} == {"W_xh", "W_hh", "b", "b_hh", "W_ih"}
    x, h, v = torch.randn(2, 5, dtype=torch.double), torch.randn(2, 6, dtype=torch.double), torch.randn(2, 3, dtype=torch.double)
    b = cell.b + cell.b_hh  # torch's two biases
    expected = torch.tanh(h @ cell.W_hh.T + x @ cell.W_xh.T + b)
    torch.testing.assert_close(cell(x, h)[0], expected)
    # the lecture's captioner: h = tanh(W_xh x + W_hh h + W_ih v)
    torch.testing.assert_close(cell(x, h, u=v)[0], torch.tanh(h @ cell.W_hh.T + x @ cell.W_xh.T + b + v @ cell.W_ih.T))


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_cells_have_torchs_parameters_and_train_its_two_biases(name):
    """A cell that mirrors a torch kernel has its parameters one for one (both biases: under Adam
    their sum moves twice as far a step as one bias, so one bias would not learn as torch does),
    and both biases get the gradient."""
    rec = make(name, num_layers=2, bidirectional="true")
    kernel = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[name](5, 6, num_layers=2, bidirectional=True)
    assert sum(p.numel() for p in rec.parameters()) == sum(p.numel() for p in kernel.parameters())
    for cell in rec.cells:
        assert cell.b_hh is not None and cell.b_hh.abs().sum() > 0  # initialised as torch does, not zero
    rec(torch.randn(3, 4, 5, dtype=torch.double), torch.tensor([4, 2, 3])).outputs.sum().backward()
    for cell in rec.cells:
        g = cell.b_hh.grad
        assert g is not None and g.abs().sum() > 0
        torch.testing.assert_close(g, cell.b.grad[: g.shape[0]])  # the same gradient as b, where both are added


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_a_state_dict_from_one_bias_cells_loads_as_the_same_function(name):
    """Checkpoints saved before the cells had torch's second bias lack b_hh: they load with
    b_hh = 0, which is the function they were trained as."""
    old = make(name)
    x, lengths = torch.randn(3, 4, 5, dtype=torch.double), torch.tensor([4, 2, 3])
    with torch.no_grad():
        for cell in old.cells:
            cell.b_hh.zero_()
    state = {k: v for k, v in old.state_dict().items() if not k.endswith(".b_hh")}
    new = make(name)
    new.load_state_dict(state)  # strict: nothing missing
    torch.testing.assert_close(new(x, lengths).outputs, old(x, lengths).outputs)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_layers"):
        make("lstm", num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        make("lstm", dropout=1.5)


@pytest.mark.slow
def test_compiled_step_loop_equals_the_eager_one():
    """cell.compile=true: the step loop through torch.compile, lengths padded to a bucket."""
    torch.manual_seed(3)
    compiled = make("lstm", extra_size=4, compile=True, compile_bucket=8, fused=False).float()
    eager = make("lstm", extra_size=4, fused=False).float()
    eager.load_state_dict(compiled.state_dict())
    x, lengths = torch.randn(3, 5, 5), torch.tensor([5, 2, 4])
    extra = Constant(torch.randn(3, 4))
    for lens in (None, lengths):
        out_c, s_c, _ = compiled(x, lens, extra=extra)
        out_e, s_e, _ = eager(x, lens, extra=extra)
        torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(flat(s_c), flat(s_e), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_constant_input_through_the_fused_kernel_equals_the_step_loop(name):
    """W_ih v at every step (captioning's every_step): the kernel reading [x_t; v] = stepping by hand."""
    torch.manual_seed(4)
    rec = make(name, extra_size=4, num_layers=2)
    x, lengths = torch.randn(3, 6, 5, dtype=torch.double), torch.tensor([6, 2, 4])
    v = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    for lens in (None, lengths):
        results = []
        for fused in (True, False):
            rec.use_fused = fused
            out, state, _ = rec(x, lens, extra=Constant(v))
            grads = torch.autograd.grad((out ** 2).sum() + flat(state).sum(), [v, *rec.parameters()])
            results.append((out, flat(state), grads))
        (o1, s1, g1), (o2, s2, g2) = results
        torch.testing.assert_close(o1, o2)
        torch.testing.assert_close(s1, s2)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_hand_written_bptt_equals_autograd(name):
    """The step loop trains through the cell's own backward step (StepLoopBPTT): its gradients
    pass gradcheck and equal autograd's through cell.step, with padding masks."""
    from zoo.recurrence import bptt, scan

    torch.manual_seed(5)
    cell = make(name).cells[0]
    if not bptt.offered(cell):
        pytest.skip(f"{name} has no hand-written backward step (autograd trains it)")
    B, T = 3, 4
    for lengths in (None, torch.tensor([4, 1, 3])):
        xp = torch.randn(B, T, cell.gate_size, dtype=torch.double, requires_grad=True)
        s0 = cell.init_state(B, dtype=torch.double)
        parts = tuple(torch.randn_like(t).requires_grad_() for t in (s0 if isinstance(s0, tuple) else (s0,)))

        def run(xp, *parts, hand=True):
            state = parts if isinstance(s0, tuple) else parts[0]
            if hand:
                out, final = scan(cell, xp, lengths, state)
                assert type(out.grad_fn).__name__ == "StepLoopBPTTBackward"  # the hand-written path ran
            else:  # autograd through the same steps
                steps, s = [], state
                for t in range(T):
                    h, new = cell.step(xp[:, t], s)
                    if lengths is not None:
                        alive = (lengths > t).unsqueeze(1)
                        new = tuple(torch.where(alive, a, b) for a, b in zip(new, s)) if isinstance(new, tuple) \
                            else torch.where(alive, new, s)
                        h = h * alive
                    s = new
                    steps.append(h)
                out, final = torch.stack(steps, 1), s
            return (out, *(final if isinstance(final, tuple) else (final,)))

        assert torch.autograd.gradcheck(run, (xp, *parts), fast_mode=True)
        weights = [torch.randn_like(o) for o in run(xp, *parts)]
        wrt = [xp, *parts, *cell.parameters()]
        grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(run(xp, *parts, hand=hand), weights)), wrt,
                                     allow_unused=True) for hand in (True, False)]
        for a, b in zip(*grads):
            if b is not None:
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_onednn_step_matmuls_equal_torch_mm(name, monkeypatch):
    """float32 on CPU: the step loop's per-step matmuls go through oneDNN (training and
    generating); outputs and gradients equal those with torch.mm within float32 rounding."""
    import zoo.recurrence.cpu as cpu

    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    torch.manual_seed(6)
    rec = make(name, extra_size=4, fused=False).float()
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 5, 1])
    extra = Constant(torch.randn(4, 4))
    results = []
    for onednn in (True, False):
        monkeypatch.setattr(cpu, "USE_ONEDNN", onednn)
        out, state, _ = rec(x, lengths, extra=extra)
        grads = torch.autograd.grad(out.square().sum() + flat(state).sum(), list(rec.parameters()))
        with torch.no_grad():
            h = rec.step(x[:, 0], rec.init_state(4)).h
        results.append((out, flat(state), grads, h))
    (o1, s1, g1, h1), (o2, s2, g2, h2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lstm_forget_bias_is_added_to_the_forget_gate_only():
    """cell.forget_bias=1.0: the forget gate's bias starts 1 higher (the others as torch's)."""
    torch.manual_seed(7)
    plain = make("lstm")
    torch.manual_seed(7)
    biased = make("lstm", forget_bias=1.0)
    H = 6
    diff = biased.cells[0].b - plain.cells[0].b
    torch.testing.assert_close(diff[H:2 * H], torch.ones(H, dtype=diff.dtype))
    assert diff[:H].abs().max() == 0 and diff[2 * H:].abs().max() == 0
