"""What a study searches and what it keeps fixed, read from Hydra's override syntax.

Two sources, in this order: ``hydra.sweeper.params`` (the search space of
conf/hparams_search/optuna.yaml) and the command line. A sweep on the command line
(``cell=rnn,gru``, ``optimizer.lr=interval(0.001,0.01)``) is searched too, in place of a
param of the same key; a plain value on the command line (``cell.hidden_size=16``) fixes
that key, which is then not searched.

    choice(64, 128, 256)  rnn,gru            categorical
    interval(0.0, 0.5)                        float, uniform
    tag(log, interval(0.0003, 0.01))          float, log-uniform
    tag(int, interval(1, 8))                  int (tag(int, log, ...): log-uniform)
    range(1, 10, 3)                           int 1, 4, 7 (step 3); a float range: its values

Optuna is imported only inside the functions: Hydra imports every plugin module at start-up.
"""
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer

from zoo.errors import ConfigError

TAGS = {"log", "int"}


@dataclass
class Param:
    """One searched key: its Optuna distribution and how a sampled value is written back as an override."""

    key: str  # as the override writes it (with a + or ++ prefix if it adds a key)
    distribution: Any  # optuna.distributions.BaseDistribution
    texts: Sequence[str] = ()  # a categorical's choices as override text, index by index
    written: str = ""  # as the config or the command line wrote it: tag(log, interval(0.0003, 0.01))

    def override(self, value: Any) -> str:
        if self.texts:  # by position: True == 1 and 1.0 == 1, so look for the same type too
            i = next(i for i, c in enumerate(self.distribution.choices) if type(c) is type(value) and c == value)
            return f"{self.key}={self.texts[i]}"
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"


@dataclass
class SearchSpace:
    params: dict[str, Param] = field(default_factory=dict)  # by name: the key without its prefix
    fixed: list[str] = field(default_factory=list)  # every job gets these (from the command line first)
    fixed_on_command_line: list[str] = field(default_factory=list)  # what names the study

    @property
    def distributions(self) -> dict[str, Any]:
        return {name: p.distribution for name, p in self.params.items()}

    def overrides(self, trial_params: Mapping[str, Any]) -> list[str]:
        """One job's command line: the fixed overrides, then the trial's sampled values."""
        return [*self.fixed, *(self.params[name].override(v) for name, v in trial_params.items())]

    def describe(self) -> dict[str, str]:
        return {name: p.written for name, p in self.params.items()}


def _name(o: Override) -> str:
    return o.get_key_element().lstrip("+~")


def _text(o: Override) -> str:
    """A plain override, normalised (``a= 5`` and ``a=5`` name the same study)."""
    if o.value_type is None:  # ~key: delete, whatever its value
        return o.get_key_element()
    return f"{o.get_key_element()}={o.get_value_element_as_str()}"


def _categorical(o: Override) -> Param:
    from optuna.distributions import CategoricalDistribution

    texts = list(o.sweep_string_iterator())
    # Optuna stores None, bool, int, float and str: anything else (a list, a dict) as its override text
    choices = [v if isinstance(v, (str, int, float, bool)) else t
               for v, t in zip(o.sweep_iterator(transformer=Transformer.encode), texts)]
    return Param(o.get_key_element(), CategoricalDistribution(choices), texts)


def distribution(o: Override) -> Param:
    """The Optuna distribution of one sweep override."""
    from optuna.distributions import FloatDistribution, IntDistribution

    sweep = o.value()
    tags = set(getattr(sweep, "tags", set()))
    where = f"{o.input_line!r}"
    if tags - TAGS:
        raise ConfigError(f"{where}: unknown tag(s) {', '.join(sorted(tags - TAGS))}; the Optuna sweeper knows "
                          f"{', '.join(sorted(TAGS))}")
    log, as_int = "log" in tags, "int" in tags
    try:
        if isinstance(sweep, IntervalSweep):
            if as_int:
                return Param(o.get_key_element(), IntDistribution(int(sweep.start), int(sweep.end), log=log))
            return Param(o.get_key_element(), FloatDistribution(sweep.start, sweep.end, log=log))
        if isinstance(sweep, RangeSweep):
            values = list(o.sweep_iterator())
            if not values:
                raise ConfigError(f"{where}: the range is empty")
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                return Param(o.get_key_element(), IntDistribution(min(values), max(values), step=abs(sweep.step),
                                                                  log=log))
            if tags:
                raise ConfigError(f"{where}: a float range is a list of values, which takes no tags; "
                                  "for a log scale write tag(log, interval(low, high))")
            # a float range as its values, exactly as Hydra counts them (a float step would drift)
            return _categorical(o)
        if o.is_choice_sweep():  # choice(a,b), a,b or glob(*)
            if tags:
                raise ConfigError(f"{where}: a choice takes no tags (log/int are for interval and range)")
            return _categorical(o)
    except ValueError as e:  # optuna's own checks: low > high, log with low <= 0, ...
        raise ConfigError(f"{where}: {e}") from e
    raise ConfigError(f"{where}: the Optuna sweeper cannot search a {type(sweep).__name__}")


def _param(o: Override) -> Param:
    param = distribution(o)
    param.written = (o.input_line or "").split("=", 1)[-1].strip()
    return param


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str],
                 parser: OverridesParser | None = None, ignore_in_name: Sequence[str] = ()) -> SearchSpace:
    """The search space of ``params`` and the command line ``arguments`` (see the module docstring).

    ``ignore_in_name``: keys whose command-line value does not name the study (the task, which
    is in the name already, and hparams_search itself).
    """
    parser = parser or OverridesParser.create()
    space = SearchSpace()
    from_config = parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()])
    from_command_line = parser.parse_overrides(list(arguments))
    fixed_keys = {_name(o) for o in from_command_line if not o.is_sweep_override()}
    fixed_by_config = []
    for o in from_config:
        if _name(o) in fixed_keys:  # fixed on the command line: not searched
            continue
        if o.is_sweep_override():
            space.params[_name(o)] = _param(o)
        else:  # a plain value among the params: every job gets it
            fixed_by_config.append(_text(o))
    for o in from_command_line:
        if o.is_sweep_override():
            space.params[_name(o)] = _param(o)  # replaces a param of the same key
            continue
        space.fixed.append(_text(o))
        if _name(o) not in ignore_in_name:
            space.fixed_on_command_line.append(_text(o))
    space.fixed += fixed_by_config
    space.fixed_on_command_line.sort()
    return space
