"""The zoo's Optuna sweeper (``hparams_search=optuna``): a study that survives its trials and its kills.

Each batch of ``n_jobs`` trials is asked from the study, run through Hydra's launcher (so the
zoo's DDP-per-job and the submitit launcher work as in any sweep) and told back:

- a finite objective (what ``zoo.run.train.train()`` returns: the monitored metric) -> COMPLETE;
- NaN, inf, no number, or a job that raised (Hydra's JobReturn FAILED) -> FAIL, with the reason
  in the trial's ``fail_reason`` attribute and the traceback in ``error.txt`` in its folder;
  the search goes on until more than ``max_failure_rate * n_trials`` trials failed, then it
  stops with a message that says how many failed and where they are.

The study is named after what the command line fixes (study.py), lives in ``storage`` (sqlite
in the sweep folder), and the same command after a kill continues it up to ``n_trials``:
trials left RUNNING are given back, new jobs are numbered after the old ones (``trial_<n>``
is Optuna's trial n and is never overwritten), and the sampler is reseeded with
``seed + trials so far`` so that it does not propose the first trials again.
"""
# No `from __future__ import annotations` in a plugin module: Hydra's plugin scan runs the module
# before it is in sys.modules, and a dataclass with string annotations looks itself up there.
import logging
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.zoo_sweeper import study as studies
from hydra_plugins.zoo_sweeper.search_space import SearchSpace, search_space
from zoo.errors import ConfigError, ZooError

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
NOT_IN_NAME = ("task", "hparams_search")  # the task is in the name already; hparams_search is always there


@dataclass
class ZooOptunaSweeperConf:
    _target_: str = "hydra_plugins.zoo_sweeper.optuna_sweeper.ZooOptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler itself: reseeded when a study resumes
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})
    direction: str = "minimize"
    study_name: Optional[str] = None  # null: <task>-<hash of the fixed command-line overrides>
    storage: Optional[str] = None  # null: in memory (no resume)
    n_trials: int = 20
    n_jobs: int = 1
    max_failure_rate: float = 0.5
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="zoo_optuna", node=ZooOptunaSweeperConf, provider="zoo")


class TooManyFailedTrials(ZooError):
    """More trials failed than max_failure_rate allows."""


class ZooOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: str, study_name: Optional[str], storage: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: Optional[Dict[str, str]]) -> None:
        super().__init__()
        self.sampler_config = sampler
        self.direction = str(direction)
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = dict(params or {})
        # storage is read from the config once the study is named (sweep()): like the sweep
        # folder, it may interpolate the study name, which is not known before
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _check_settings(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: choose one of {', '.join(DIRECTIONS)}")
        if not isinstance(self.n_trials, int) or self.n_trials < 0:
            raise ConfigError(f"hydra.sweeper.n_trials={self.n_trials}: give a whole number >= 0")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_jobs={self.n_jobs}: give a whole number >= 1")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: give a fraction of "
                              "n_trials between 0 (stop at the first failure) and 1 (never stop)")

    def _name_study(self, task: str, space: SearchSpace) -> tuple[str, list[str]]:
        """The study's name, written into the config (the sweep folder and storage interpolate it),
        and the overrides that give every job the same name."""
        assert self.config is not None
        if self.study_name:
            return self.study_name, []
        name = studies.default_name(task, space.fixed_on_command_line)
        with read_write(self.config.hydra), open_dict(self.config.hydra):
            self.config.hydra.sweeper.study_name = name
        return name, [f"hydra.sweeper.study_name={name}"]

    def _sampler(self, seed_offset: int) -> Any:
        cfg = self.sampler_config
        if cfg is None:
            return None
        seed = cfg.get("seed") if hasattr(cfg, "get") else None
        if seed is not None and seed_offset:  # a resumed study: another seed, so not the same proposals again
            return instantiate(cfg, seed=int(seed) + seed_offset)
        return instantiate(cfg)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        self._check_settings()
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = search_space(self.params, arguments, parser, ignore_in_name=NOT_IN_NAME)
        task = str(OmegaConf.select(self.config, "hydra.runtime.choices.task") or "study")
        name, name_overrides = self._name_study(task, space)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        storage = OmegaConf.select(self.config, "hydra.sweeper.storage")
        studies.check_folder(sweep_dir, name)
        sweep_dir.mkdir(parents=True, exist_ok=True)  # before sqlite opens its file there

        ident = studies.identity(task, space.fixed_on_command_line)
        before = studies.existing_trials(name, storage)
        study = studies.open_study(name, storage, self._sampler(before), self.direction, ident, space.distributions)
        # only now, once the study is known to be this search's: a refused command leaves the folder as it was
        studies.write_record(sweep_dir, name, ident, space.describe(), self.direction, storage)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        killed = studies.give_back_killed(study)
        if killed:
            log.warning("study %s: trial(s) %s were left running by a killed sweep: marked FAIL (interrupted), "
                        "not counted; their budget is given back", name, ", ".join(map(str, killed)))
        done = len(studies.ran_to_an_end(study))
        if before:
            log.info("study %s: %d of %d trials finished before; running the rest", name, done, self.n_trials)
        else:
            log.info("study %s: %d trials, %s %s, in %s", name, self.n_trials, self.direction,
                     self._metric(), sweep_dir)
        self._check_failures(study, name, before_batch=True)

        while done < self.n_trials:
            trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, self.n_trials - done))]
            try:
                batch = [[*space.overrides(t.params), *name_overrides] for t in trials]
                self.validate_batch_is_legal(batch)
                returns = self._launch(trials, batch)
            except BaseException:  # a composition error, Ctrl-C, SIGTERM: these trials did not run to an end
                studies.mark_interrupted(study, [t.number for t in trials])
                raise
            for trial, ret in zip(trials, returns):
                self._tell(study, trial, ret)
            done += len(trials)
            self._check_failures(study, name)

        if any(t.value is not None for t in study.trials):
            best = study.best_trial
            log.info("study %s: best trial %d, %s=%.6g, %s", name, best.number, self._metric(), best.value,
                     " ".join(f"{k}={v}" for k, v in best.params.items()))
        return study

    def _launch(self, trials: list, batch: list[list[str]]) -> list[JobReturn]:
        """Launch in runs of consecutive trial numbers: job n is trial n (and folder trial_<n>)."""
        returns: list[JobReturn] = []
        start = 0
        for i in range(1, len(trials) + 1):
            if i == len(trials) or trials[i].number != trials[i - 1].number + 1:
                returns += self.launcher.launch(batch[start:i], initial_job_idx=trials[start].number)
                start = i
        return returns

    def _metric(self) -> str:
        return str(OmegaConf.select(self.config, "monitor.metric", default="the objective"))

    def _tell(self, study: Any, trial: Any, ret: JobReturn) -> None:
        from optuna.trial import TrialState

        folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg is not None else None
        trial.set_user_attr("folder", folder)
        reason = None
        if ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            try:
                value = float(value)
            except (TypeError, ValueError):
                reason = f"the job returned {value!r}, not a number"
            else:
                if not math.isfinite(value):  # optuna refuses NaN as a value; inf is a diverged run
                    reason = f"{self._metric()} is {value} (diverged, or not logged)"
        else:
            try:
                ret.return_value  # raises the job's exception
                reason = f"the job ended with status {ret.status.name}"
            except Exception as e:
                reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
                if folder:
                    try:
                        (Path(folder) / "error.txt").write_text("".join(traceback.format_exception(e)))
                    except OSError:
                        pass
        if reason is None:
            study.tell(trial, value)
            log.info("trial %d: %s=%.6g", trial.number, self._metric(), value)
            return
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s (%s)", trial.number, reason, folder)

    def _check_failures(self, study: Any, name: str, before_batch: bool = False) -> None:
        failed = studies.failures(study)
        allowed = float(self.max_failure_rate) * self.n_trials
        if len(failed) <= allowed or (before_batch and len(studies.ran_to_an_end(study)) >= self.n_trials):
            return
        folders = [str(t.user_attrs.get("folder") or f"trial {t.number}") for t in failed]
        first = next((t.user_attrs["fail_reason"] for t in failed if t.user_attrs.get("fail_reason")), None)
        raise TooManyFailedTrials(
            f"study {name}: {len(failed)} of {self.n_trials} trials failed, more than "
            f"hydra.sweeper.max_failure_rate={self.max_failure_rate} allows ({math.floor(allowed)}), so the search "
            f"stops. Their folders hold the log (zoo.log) and, for a trial that raised, error.txt: {', '.join(folders)}"
            + (f". First failure: {first}" if first else ""))

