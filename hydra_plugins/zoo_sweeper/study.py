"""A study's identity and its bookkeeping across kills.

Identity: a study is the search of one task with one set of fixed command-line overrides.
Its default name is ``<task>-<hash of those overrides>`` (just ``<task>`` when nothing is
fixed), so a search with other fixed overrides gets another study (and folder) instead of
silently mixing its trials into this one. The study keeps its identity in a user attribute;
``study.json`` in the sweep folder says the same for a person. A study named explicitly
(``hydra.sweeper.study_name``) that was started with other fixed overrides, another
direction or another search space is refused, and so is a folder that holds another study.

Kills: a trial that a killed sweep left RUNNING is marked FAIL when the study resumes and
listed in the study's ``interrupted_trials`` attribute; it did not run to an end, so it does
not count against ``n_trials`` or ``max_failure_rate``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from zoo.errors import ConfigError

log = logging.getLogger(__name__)

RECORD = "study.json"  # in the sweep folder
IDENTITY = "zoo_identity"  # study user attribute: {"task": ..., "fixed_overrides": [...]}
INTERRUPTED = "interrupted_trials"  # study user attribute: numbers of the trials that did not run to an end


def default_name(task: str, fixed: Sequence[str]) -> str:
    if not fixed:
        return task
    return f"{task}-{hashlib.sha256(chr(10).join(sorted(fixed)).encode()).hexdigest()[:8]}"


def identity(task: str, fixed: Sequence[str]) -> dict:
    return {"task": task, "fixed_overrides": sorted(fixed)}


def _shown(fixed: Sequence[str]) -> str:
    return " ".join(fixed) if fixed else "(none)"


def check_folder(sweep_dir: Path, name: str) -> None:
    """A sweep folder holds one study: its trial folders are numbered by that study's trials."""
    record = sweep_dir / RECORD
    try:
        held = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    if held.get("study_name") not in (None, name):
        raise ConfigError(
            f"{sweep_dir} holds study '{held['study_name']}' (fixed overrides: "
            f"{_shown(held.get('fixed_overrides', []))}), and this search is study '{name}': their trial folders "
            "would overwrite each other. Give this search another hydra.sweep.dir, or the same fixed overrides "
            f"to continue '{held['study_name']}'")


def write_record(sweep_dir: Path, name: str, ident: dict, searched: dict, direction: str, storage: str | None) -> None:
    record = {"study_name": name, **ident, "searched": searched, "direction": direction, "storage": storage}
    (sweep_dir / RECORD).write_text(json.dumps(record, indent=1) + "\n")


def existing_trials(name: str, storage: str | None) -> int:
    """How many trials the stored study has (0 if there is none yet)."""
    import optuna

    if storage is None or name not in optuna.get_all_study_names(storage):
        return 0
    return len(optuna.load_study(study_name=name, storage=storage).trials)


def open_study(name: str, storage: str | None, sampler: Any, direction: str, ident: dict,
               distributions: dict[str, Any]):
    """Create the study, or load it and check that it is this search's study."""
    import optuna
    from optuna.distributions import check_distribution_compatibility

    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction=direction,
                                load_if_exists=True)
    where = f"study '{name}'" + (f" in {storage}" if storage else "")
    held = study.user_attrs.get(IDENTITY)
    if held is None:
        if study.trials:
            log.warning("%s does not record its fixed overrides (an older sweeper made it): it is taken to be "
                        "this search's", where)
        study.set_user_attr(IDENTITY, ident)
    elif held != ident:
        was = [f"task={held.get('task')}"] + list(held.get("fixed_overrides", []))
        now = [f"task={ident['task']}"] + list(ident["fixed_overrides"])
        raise ConfigError(
            f"{where} was started with other fixed overrides (only the study has: "
            f"{_shown([o for o in was if o not in now])}; only this command has: "
            f"{_shown([o for o in now if o not in was])}): its trials and these would mix two different searches. "
            "Continue it with its own overrides (study.json in its folder lists them), name another study "
            "(hydra.sweeper.study_name=...), or leave study_name unset: the zoo then names the study after the "
            "fixed overrides")
    if study.direction.name.lower() != direction:
        raise ConfigError(f"{where} {study.direction.name.lower()}s its objective, and this search would "
                          f"{direction} it: name another study (hydra.sweeper.study_name=...)")
    for trial in study.trials:
        for key, old in trial.distributions.items():
            if key in distributions:
                try:
                    check_distribution_compatibility(old, distributions[key])
                except ValueError:
                    raise ConfigError(f"{where} searched {key} over {old}, and this search would search it over "
                                      f"{distributions[key]}: name another study (hydra.sweeper.study_name=...)") \
                        from None
    return study


def interrupted(study) -> set[int]:
    return set(study.user_attrs.get(INTERRUPTED, []))


def mark_interrupted(study, numbers: Sequence[int]) -> None:
    """Trials that did not run to an end (a kill, Ctrl-C): FAIL, listed, not counted."""
    from optuna.trial import TrialState

    if not numbers:
        return
    study.set_user_attr(INTERRUPTED, sorted(interrupted(study) | set(numbers)))
    for n in numbers:
        study.tell(n, state=TrialState.FAIL, skip_if_finished=True)


def give_back_killed(study) -> list[int]:
    """Mark the trials a killed sweep left RUNNING as interrupted; returns their numbers.

    One sweep drives a study at a time: a RUNNING trial found at the start is a dead one's.
    """
    from optuna.trial import TrialState

    killed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    mark_interrupted(study, killed)
    return killed


def ran_to_an_end(study) -> list:
    from optuna.trial import TrialState

    skip = interrupted(study)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
            if t.number not in skip]


def failures(study) -> list:
    from optuna.trial import TrialState

    return [t for t in ran_to_an_end(study) if t.state == TrialState.FAIL]
