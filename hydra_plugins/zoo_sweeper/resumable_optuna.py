"""The Optuna sweeper, made resumable (``hparams_search=optuna`` uses it).

hydra-optuna-sweeper already keeps its study in ``storage`` (``load_if_exists``), but a rerun
after a kill would run ``n_trials`` *more* trials, numbered from 0 again, so their folders
overwrite the first run's. This subclass counts the trials the study already finished, runs
only the rest of the budget, numbers the new jobs after the old ones, reseeds the sampler
(a seeded sampler would propose the first trials again), and makes sure the sweep folder
exists before the sqlite file is opened in it.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        import optuna  # here, not at import: Hydra imports every plugin at start-up

        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        impl = self.sweeper
        Path(impl.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        if impl.storage:
            try:
                study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
            except KeyError:  # no such study yet
                study = None
            if study is not None:
                done = sum(t.state in finished for t in study.trials)
                log.info("study %s: %d of %d trials finished before; running the rest", impl.study_name, done,
                         impl.n_trials)
                impl.n_trials = max(0, impl.n_trials - done)
                impl.job_idx = len(study.trials)
                if hasattr(impl.sampler, "reseed_rng"):  # the seeded sampler would repeat the first trials
                    impl.sampler.reseed_rng()
                if impl.n_trials == 0:
                    log.info("study %s is complete", impl.study_name)
                    return
        super().sweep(arguments)
