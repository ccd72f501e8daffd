"""Cells: one step of a recurrence, ``h_t = f_W(h_{t-1}, x_t)``. See :mod:`zoo.cells.base`."""
from zoo.cells.base import Cell, CellState
from zoo.cells.gru import GRUCell
from zoo.cells.lstm import LSTMCell
from zoo.cells.mingru import MinGRUCell
from zoo.cells.rnn import RNNCell

__all__ = ["Cell", "CellState", "RNNCell", "LSTMCell", "GRUCell", "MinGRUCell"]
