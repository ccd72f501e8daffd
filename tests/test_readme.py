"""Every command the README shows runs as written.

The commands are read from the README's code blocks (indented by four spaces), so a command
added there is run here without anyone writing a test for it; one that no rule below knows
fails the first test. Each runs as written, with only what a test must add appended:

- tiny sizes and a fast dev run for training commands (a full run takes minutes), and a run
  or sweep folder in the test's temporary folder;
- placeholders made real: ``outputs/<task>/RUN`` (and the dated run folder of the resume
  example) is a run this module trains once, ``photo.jpg`` an image, ``DIR`` a folder of the
  format the command names, ``../shared/data`` the real data (skipped where it is absent);
- commands that need hardware this machine lacks (4 GPUs, a SLURM cluster, several nodes)
  are composed and checked (``--cfg job`` and the combination checks) instead of run;
- the hand-run benchmarks (15-25 minutes each) are checked with ``--dry-run``: the same
  command composes its config and prints what it would run.

Commands run in this process (``python -m zoo`` is ``zoo.__main__.main``, and so on), which
saves the start-up of a fresh interpreter each; DDP commands still start their other ranks.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_DATA, TINY, check_metrics, compose, run_module

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def readme_blocks() -> list[list[str]]:
    """The README's indented code blocks, each a list of its lines (backslash continuations joined)."""
    blocks, current = [], []
    in_fence = False
    for raw in README.read_text().splitlines():
        if raw.startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence and raw.startswith("    ") and raw.strip():
            line = raw[4:]
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1].rstrip() + " " + line.strip()
            else:
                current.append(line)
        elif current:  # a blank or unindented line ends the block
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _is_python(block: list[str]) -> bool:
    return bool(block) and block[0].startswith(("import ", "from "))


def _is_listing(block: list[str]) -> bool:
    """A folder listing (the Layout section): each line a folder, then what it holds."""
    return block[0].split()[0].endswith("/") and all(line.split()[0].endswith("/") or line.startswith(" ")
                                                      for line in block)


def readme_commands() -> list[str]:
    """Shell commands of the README (comments dropped), in order; the Python block and the
    folder listing aside."""
    out = []
    for block in readme_blocks():
        if _is_python(block) or _is_listing(block):
            continue
        for line in block:
            if line.startswith("#"):  # a script's comment or #SBATCH line
                continue
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words) if "|" not in line else line.split(" #")[0].strip())
    return out


TASK_OF_RECIPE = {"neuraltalk": "captioning", "show_and_tell": "captioning", "show_attend_tell": "captioning",
                  "char_rnn": "charlm", "seq2seq_attention": "translation", "sentiment_bilstm": "sentiment",
                  "tagger_bilstm": "tagging", "row_lstm": "seqimage", "ram": "glimpse", "draw": "draw"}
FAST = ["trainer.fast_dev_run=true"]
# sizes for real data sets (the recipes' models are big): the model small, a few batches
REAL = {"charlm": ["cell.hidden_size=16", "data.batch_size=4", "data.bptt=20", "encoder.dim=8"],
        "sentiment": ["cell.hidden_size=16", "encoder.dim=8"], "tagging": ["cell.hidden_size=16", "encoder.dim=8"],
        "translation": ["cell.hidden_size=16", "encoder.dim=8", "head.embed_dim=8", "head.attention_dim=8",
                        "data.batch_size=8", "data.eval_batch_size=8"]}


def _task(args: list[str]) -> str:
    for a in args:
        if a.startswith("task="):
            return a.split("=", 1)[1]
        if a.startswith("recipe="):
            return TASK_OF_RECIPE[a.split("=", 1)[1]]
    return "captioning"


def _first_job(args: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``cell=rnn,gru`` -> ``cell=rnn``), without ``-m``."""
    first = lambda a: a.split(",")[0] if "," in a and "'" not in a and "[" not in a and "(" not in a else a
    return [first(a) for a in args if a != "-m" and "=" in a]


def _tiny(args: list[str]) -> list[str]:
    """The task's tiny sizes, except what the command itself sets (its own values win) and keys
    its config does not have (another encoder or data set than the task's default)."""
    from omegaconf import OmegaConf

    task = _task(args)
    given = {a.split("=", 1)[0] for a in args}
    real = any("shared/data" in a or a.startswith("data=") for a in args)
    extra = REAL.get(task, []) if real else TINY[task]
    cfg = compose(*[a for a in _first_job(_real_data(args)) if not a.startswith(("hydra", "resume"))])
    keep = lambda key: key not in given and (key.startswith("trainer.") or OmegaConf.select(cfg, key, default=KeyError) is not KeyError)
    return [o for o in extra if keep(o.split("=", 1)[0])]


# commands that need the network here: they must stop with a message that says what to do
OFFLINE = {"data.name=mnist": "Offline", "encoder=resnet18": "encoder.pretrained=false"}


def _real_data(args: list[str]) -> list[str]:
    return [a.replace("../shared/data", str(SHARED_DATA)) for a in args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small trained run per task the README's examples use, and what they read."""
    from zoo.run.train import train

    root = tmp_path_factory.mktemp("readme-runs")
    made = {}
    for task in ("captioning", "charlm", "sentiment", "translation", "tagging"):
        made[task] = root / task
        train(compose(f"task={task}", *TINY[task], "trainer.max_epochs=1"), run_dir=made[task], name=task)
    from PIL import Image

    for i, name in enumerate(("photo.jpg", "photo1.jpg", "photo2.png")):
        Image.new("RGB", (40, 40), (200, 40 * i, 90)).save(root / name)
    return root, made


def _substitute(args: list[str], runs, tmp_path) -> list[str]:
    root, made = runs
    out = []
    for a in args:
        m = re.search(r"outputs/(\w+)/(RUN|\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)", a)
        if m:
            run = made[m.group(1)]
            if m.group(2) != "RUN":  # resume continues a run folder: give it a copy of its own
                copy = tmp_path / "resumed"
                if not copy.exists():
                    shutil.copytree(run, copy)
                run = copy
            a = a.replace(m.group(0), str(run))
        if a in ("photo.jpg", "photo1.jpg", "photo2.png"):
            a = str(root / a)
        out.append(a)
    return out


def _folder_args(args: list[str], tmp_path: Path) -> list[str]:
    sweep = "-m" in args
    given = {a.split("=", 1)[0] for a in args}
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    return [] if key in given or any(a.startswith("resume=") for a in args) else [f"{key}={tmp_path / 'out'}"]


def _compose_only(args: list[str]) -> None:
    """What can be checked without the hardware: the config composes and passes the checks."""
    from zoo.run.checks import check

    cfg, choices = compose(*[a for a in _first_job(args) if not a.startswith("hydra.run.dir")], choices=True)
    check(cfg, choices)


def _frame_folders(tmp_path: Path) -> Path:
    from PIL import Image

    root = tmp_path / "frames"
    for split in ("train", "val", "test"):
        for clip in range(4):
            folder = root / split / f"clip{clip}"
            folder.mkdir(parents=True)
            for t in range(3):
                Image.new("RGB", (16, 16), (60 * t, 80 * (clip % 2), 30)).save(folder / f"{t:03d}.png")
            (folder / "labels.txt").write_text("\n".join(["still", "moving", "moving"] if clip % 2 else ["still"] * 3) + "\n")
    return root


def _class_folders(tmp_path: Path) -> Path:
    """DIR/<class>/*.png: two classes of small grey images (data=image_folder)."""
    from PIL import Image

    root = tmp_path / "classes"
    for label, shade in (("dark", 40), ("light", 210)):
        (root / label).mkdir(parents=True)
        for k in range(10):
            Image.new("L", (28, 28), shade + k).save(root / label / f"{k}.png")
    return root


def _treebank(tmp_path: Path) -> Path:
    """CoNLL-U files (the UD English-EWT names) of sentences the tagging run's grammar makes."""
    from zoo.data.tag_grammar import make_sentences

    root = tmp_path / "treebank"
    root.mkdir()
    for split, seed in (("train", 1), ("dev", 2), ("test", 3)):
        lines = []
        for k, (words, tags) in enumerate(make_sentences(30, seed)):
            lines += [f"# sent_id = {split}-{k}", *(f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\t_\t_\t_"
                                                    for i, (w, t) in enumerate(zip(words, tags), start=1)), ""]
        (root / f"en_ewt-ud-{split}.conllu").write_text("\n".join(lines) + "\n")
    return root


def run_command(command: str, runs, tmp_path: Path) -> str:
    """Run one README command by the rules above; returns what it printed."""
    stdin = None
    if "|" in command:  # echo "text" | python -m ...
        left, command = (part.strip() for part in command.split("|", 1))
        stdin = shlex.split(left)[1] + "\n"
    words = shlex.split(command)
    head, args = words[0], words[1:]
    if head == "make":
        r = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and ".venv" in r.stdout, r.stderr
        return r.stdout
    if head == "source":
        assert (ROOT / "Makefile").read_text().count("$(VENV)") and args == [".venv/bin/activate"]
        return ""
    if head in ("torchrun", "srun"):  # several nodes, a cluster: compose what each process runs
        zoo_args = args[args.index("-m") + 2:] if "-m" in args else args[args.index("zoo") + 1:]
        _compose_only(zoo_args)
        return ""
    assert head == "python" and args[0] == "-m", command
    module, args = args[1], args[2:]
    args = _substitute(args, runs, tmp_path)
    if module.startswith("benchmarks."):
        code, out, err = run_module(module, [*_real_data(args), "--dry-run"])
        assert code == 0, err
        return out
    if module == "zoo" and any(a in ("trainer.devices=4", "trainer=gpu") or "submitit" in a for a in args):
        _compose_only(_real_data([a for a in args if "submitit" not in a and not a.startswith("hydra.launcher")]))
        return ""
    if module == "zoo" and any(a in ("--help", "--cfg") for a in args):
        code, out, err = run_module(module, args)
        assert code == 0, err
        return out
    if module == "zoo":
        if any("shared/data" in a for a in args) and not SHARED_DATA.is_dir():
            pytest.skip("../shared/data is not here")
        args = _real_data(args)
        if "data.root=DIR" in args and ("data=idx" in args or "data=cluttered" in args):  # MNIST-family IDX files
            from test_idx_data import write_idx_folder

            args[args.index("data.root=DIR")] = f"data.root={write_idx_folder(tmp_path / 'idx', n_train=80, side=28)}"
            args.append("data.val_size=16" if "data=idx" in args else "data.val_digits=16")
        if "data.root=DIR" in args:
            args[args.index("data.root=DIR")] = f"data.root={_frame_folders(tmp_path)}"
        if "data.data_dir=DIR" in args:
            args[args.index("data.data_dir=DIR")] = f"data.data_dir={_class_folders(tmp_path)}"
        if any(a.startswith("resume=") for a in args):
            extra = []
        elif "-m" in args:
            trials = [a for a in args if a.startswith("hydra.sweeper.n_trials=")]
            args = [a for a in args if a not in trials]
            extra = [*_tiny(args), "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     *(["hydra.sweeper.n_trials=2"] if "hparams_search=optuna" in args else [])]
        elif any(a.startswith("trainer.max_epochs=") for a in args):
            extra = [*_tiny(args), "trainer.limit_train_batches=2"]
        else:
            extra = [*_tiny(args), *FAST]
            if any("shared/data" in a for a in args) or "data=frame_folders" in args:
                extra = [o for o in extra if not o.startswith("data.") or "=DIR" in o]
        code, out, err = run_module("zoo", [*args, *extra, *_folder_args(args, tmp_path)])
        offline = next((hint for a, hint in OFFLINE.items() if a in args and "encoder.pretrained=false" not in args), None)
        if offline:  # weights or a hub set from the network, which this machine lacks: a clear error
            assert code == 2 and offline in err and "Traceback" not in err, err
            return out
        assert code == 0, err
        return out
    if module == "zoo.evaluate" and "data.root=DIR" in args:  # another treebank in the model's tag set
        args[args.index("data.root=DIR")] = f"data.root={_treebank(tmp_path)}"
    args = [a for a in args if a != "[--json]"] + (["--json"] if "[--json]" in args else [])
    code, out, err = run_module(module, args, stdin=stdin)
    assert code == 0, err
    return out


COMMANDS = readme_commands()


def test_the_readme_has_commands_and_every_one_has_a_rule():
    assert any(c.startswith("python -m zoo task=captioning") for c in COMMANDS)
    assert "make train" in COMMANDS and "make test" in COMMANDS
    for c in COMMANDS:
        words = shlex.split(c.split("|")[-1])
        assert words[0] in ("make", "source", "python", "torchrun", "srun"), c
        if words[0] == "python":
            assert words[1] == "-m" and words[2].split(".")[0] in ("zoo", "benchmarks"), c


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i}-{c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command(command, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's relative paths (../shared/data) are from the repo
    out = run_command(command, runs, tmp_path)
    words = shlex.split(command.split("|")[-1])
    if words[:3] == ["python", "-m", "zoo"] and "--help" not in words and "--cfg" not in words:
        folder = re.search(r"run folder: (.+)", out)
        if folder and Path(folder.group(1)).joinpath("metrics.json").is_file():
            check_metrics(json.loads(Path(folder.group(1), "metrics.json").read_text()))


def test_readme_python_api_block(runs, tmp_path):
    """The README's Python example, with its RUN and photo placeholders made real."""
    root, made = runs
    blocks = [b for b in readme_blocks() if _is_python(b)]
    assert blocks, "the README shows no Python example"
    for block in blocks:
        code = "\n".join(block).replace("outputs/captioning/RUN", str(made["captioning"]))
        code = code.replace('"photo.jpg"', repr(str(root / "photo.jpg")))
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
        assert isinstance(scope["model"].predict_inputs([str(root / "photo.jpg")])[0]["caption"], str)
        assert type(scope["untrained"].decoder.recurrence.cells[0]).__name__ == "GRUCell"
