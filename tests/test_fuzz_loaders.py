"""Every file loader survives corrupted input (README: bad input gives "an error naming the file
and line, or with data.on_bad=skip a counted skip" - never a traceback from inside the loader,
never a hang).

For each format a small, valid, real-looking file set is written here (no shared data needed),
hypothesis corrupts it (byte flips, truncation, lines deleted/duplicated/inserted, control
characters and NULs, invalid UTF-8, wrong column counts, empty fields, unseen labels, broken
gzip streams, broken JSON structure, missing or truncated images, ...), and the DataModule is
built the way its conf/data/<name>.yaml builds it and set up under data.on_bad=error and
data.on_bad=skip. The outcome must be one of:

* a success whose data is sane (every split non-empty, ids in range, every batch of every
  loader builds: no image fails to decode mid-epoch);
* a DataError that names the file (and, for line-based formats, the line: ``path:N``);

and the two policies must agree: what error mode accepts, skip mode accepts unchanged with no
skips; what skip mode accepts with no skips, error mode accepts; where error mode refused input
that skip mode went on with, skip mode counted what it left out.

Any other exception is a bug in the loader, and hypothesis prints the smallest corruption that
shows it. Runs are derandomized (no example database), so CI sees the same cases every time.
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from test_captioning_data import short_png

from zoo.run.configs import config_dir
from zoo.data.tagging import IGNORE
from zoo.errors import DataError

SPLITS = ("train", "val", "test")
SKIPPABLE = "set data.on_bad=skip to leave such input out"  # what BadInput adds to what skip mode skips
# problems of a whole file, which have no line to name
WHOLE_FILE = re.compile(r"split has no usable examples|empty file \(expected a header|file not found")

CASES: Counter = Counter()  # examples run per loader, reported by each test
OUTCOMES: dict[str, Counter] = {}  # per loader: how the cases ended (accepted, skipped and counted, refused)
EXAMPLE_LIMIT_S = 20.0  # one example (both policies) that runs longer than this hangs
TEST_LIMIT_S = 300.0  # the whole test, shrinking included

FUZZ = settings(derandomize=True, database=None, deadline=5000, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- hang guard ---------------------------------------------------------------------------------

class LoaderHang(Exception):
    """One example ran past EXAMPLE_LIMIT_S: hypothesis reports (and shrinks) it as a failure."""


class FuzzTimeout(BaseException):
    """The whole test ran past TEST_LIMIT_S: stop, shrinking included."""


_deadline_at = [float("inf")]


def _on_alarm(signum, frame):
    if time.monotonic() >= _deadline_at[0]:
        raise FuzzTimeout(f"the fuzz test ran past {TEST_LIMIT_S:.0f} s")
    raise LoaderHang(f"a loader ran past {EXAMPLE_LIMIT_S:.0f} s on one input: it hangs")


@pytest.fixture(autouse=True)
def _test_time_limit():
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    _deadline_at[0] = time.monotonic() + TEST_LIMIT_S
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _deadline_at[0] = float("inf")


class _example_time_limit:
    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            left = _deadline_at[0] - time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, max(0.01, min(EXAMPLE_LIMIT_S, left)))

    def __exit__(self, *exc):
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)


# -- building a DataModule the way conf/data/<name>.yaml does ------------------------------------

@functools.cache
def _conf(name: str):
    return OmegaConf.load(config_dir() / "data" / f"{name}.yaml")


def make(name: str, **overrides):
    """``instantiate(cfg.data)`` for ``data=<name>`` with these overrides (``seed`` as the root config has it)."""
    data = OmegaConf.merge(_conf(name), overrides)
    return instantiate(OmegaConf.create({"seed": 0, "data": data}).data)


# -- outcomes -----------------------------------------------------------------------------------

@dataclass
class Ok:
    counts: dict
    summary: object


@dataclass
class Refused:
    message: str


def attempt(name: str, overrides: dict, sane: Callable) -> Ok | Refused:
    """Set the module up and build its loaders (a DataError is a clean refusal); then every batch
    of every loader must build: nothing may fail later, mid-epoch."""
    dm = make(name, **overrides)
    try:
        dm.setup()
        loaders = [dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()]
    except DataError as e:
        return Refused(str(e))
    return Ok(dict(dm.bad.counts), sane(dm, loaders))


def judge(error: Ok | Refused, skip: Ok | Refused, where_ok: Callable[[str], None]) -> None:
    for outcome in (error, skip):
        if isinstance(outcome, Refused):
            where_ok(outcome.message)
    if isinstance(error, Ok):
        assert error.counts == {}
        assert isinstance(skip, Ok), f"error mode accepted the input, skip mode refused it: {skip.message}"
        assert skip.counts == {} and skip.summary == error.summary, "skip mode changed input error mode accepted"
    elif isinstance(skip, Ok):
        assert SKIPPABLE in error.message, f"skip mode went on past a hard error: {error.message}"
        assert skip.counts, f"skip mode left input out without counting it (error mode said: {error.message})"


def names_a_file(paths: list[Path], line_based: bool) -> Callable[[str], None]:
    def check(message: str) -> None:
        named = [p for p in paths if str(p) in message]
        assert named, f"the message names none of the files: {message}"
        if line_based and not WHOLE_FILE.search(message):
            assert any(re.search(re.escape(str(p)) + r":\d+", message) for p in named), \
                f"the message names no line: {message}"
    return check


def run_case(name: str, files: dict[str, bytes | None], overrides: Callable[[Path], dict], sane: Callable,
             where: Callable[[Path], Callable[[str], None]]) -> None:
    """Write the (corrupted) files, set the module up under both policies, judge the outcomes."""
    CASES[name] += 1
    with tempfile.TemporaryDirectory() as tmp, _example_time_limit():
        root = Path(tmp)
        write_files(root, files)
        error = attempt(name, {**overrides(root), "on_bad": "error"}, sane)
        skip = attempt(name, {**overrides(root), "on_bad": "skip"}, sane)
        judge(error, skip, where(root))
    OUTCOMES.setdefault(name, Counter())[_outcome(error, skip)] += 1


def _outcome(error: Ok | Refused, skip: Ok | Refused) -> str:
    if isinstance(error, Ok):
        return "accepted"
    return "skipped (counted)" if isinstance(skip, Ok) else "refused (DataError)"


def write_files(root: Path, files: dict[str, bytes | None]) -> None:
    for rel, data in files.items():
        path = root / rel
        if data is None:  # a folder
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def report(name: str, minimum: int, record_property) -> None:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(OUTCOMES.get(name, Counter()).items()))
    print(f"\nfuzz {name}: {CASES[name]} cases ({outcomes})")
    record_property(f"fuzz_cases_{name}", CASES[name])
    assert CASES[name] >= minimum, f"only {CASES[name]} cases of {name} ran"


# -- sanity of what a loader accepted ------------------------------------------------------------

def _ids_ok(t: torch.Tensor, n: int, allow_ignore: bool = False) -> None:
    ok = (t >= 0) & (t < n)
    if allow_ignore:
        ok |= t == IGNORE
    assert bool(ok.all()), f"ids out of range [0, {n})"


def sane_sequences(dm, loaders) -> object:
    spec = dm.spec
    sizes = {s: len(dm.data[s]) for s in SPLITS}
    assert all(sizes.values()), sizes
    vocab = len(spec.vocab) if spec.vocab is not None else None
    for split, loader in zip(SPLITS, loaders):
        seen = 0
        for batch in loader:
            if "tokens" in batch:
                _ids_ok(batch["tokens"], vocab)
            if "src" in batch:
                _ids_ok(batch["src"], len(spec.src_vocab))
                _ids_ok(batch["tgt"], vocab)
                assert len(batch["refs"]) == len(batch["src"])
            if "frames" in batch:
                f = batch["frames"]
                assert f.shape[2:] == spec.image_shape and bool(torch.isfinite(f).all())
                assert 0 <= float(f.min()) and float(f.max()) <= 1
            if "labels" in batch:
                _ids_ok(batch["labels"], len(spec.labels), allow_ignore=True)
            seen += len(batch["lengths"] if "lengths" in batch else batch["src_lengths"])
        if split != "train":  # evaluation batches hold every example once
            assert seen == sizes[split], f"{split}: {seen} examples in batches, {sizes[split]} in the split"
    return sizes, vocab, spec.labels


def sane_text(dm, loaders) -> object:
    vocab = len(dm.spec.vocab)
    for loader in loaders:
        for batch in loader:
            _ids_ok(batch["tokens"], vocab)
    return {s: len(dm.data[s]) for s in SPLITS}, vocab


def sane_captions(dm, loaders) -> object:
    vocab, S = len(dm.vocab), dm.image_size
    sizes = {s: len(dm.splits[s].names) for s in SPLITS}
    assert all(sizes.values()), sizes
    for loader in loaders:
        for batch in loader:
            im = batch["images"]
            assert im.shape[1:] == (3, S, S) and bool(torch.isfinite(im).all())
            assert 0 <= float(im.min()) and float(im.max()) <= 1
            _ids_ok(batch["captions"], vocab)
    return sizes, vocab, {s: dm.splits[s].refs for s in SPLITS}


# -- corruptions --------------------------------------------------------------------------------

FRACTION = st.floats(0, 1, exclude_max=True, allow_nan=False)
INDEX = st.integers(0, 10_000)
NASTY_TEXT = st.sampled_from(["\x00", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff",
                              "\x1b[31m", '"', "'", ",", "#", "_", "-", "1-2", " ", "\t\t", "é", "☃", "🙂",
                              "\U0010ffff", "<PAD>", "<UNK>"])
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=12))  # hypothesis's text: any code point, controls included
BAD_BYTES = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                             b"\x80", b"\xe2\x82", b"\xef\xbb\xbf"])
PAYLOAD = st.one_of(BAD_BYTES, TEXT.map(lambda t: t.encode("utf-8")), st.binary(max_size=8))
UNSEEN = st.one_of(st.sampled_from(["neutral", "2", "NOUN2", "B-MISC", "jump", "", " ", "ＰＲＯＮ"]), st.text(max_size=6))

BYTE_OPS = st.one_of(
    st.tuples(st.just("flip"), INDEX, FRACTION, st.integers(1, 255)),
    st.tuples(st.just("truncate"), INDEX, FRACTION),
    st.tuples(st.just("insert_bytes"), INDEX, FRACTION, PAYLOAD),
    st.tuples(st.just("delete_bytes"), INDEX, FRACTION, st.integers(1, 40)),
)
LINE_OPS = st.one_of(
    st.tuples(st.just("delete_line"), INDEX, INDEX),
    st.tuples(st.just("duplicate_line"), INDEX, INDEX),
    st.tuples(st.just("insert_line"), INDEX, INDEX, PAYLOAD),
    st.tuples(st.just("swap_lines"), INDEX, INDEX, INDEX),
    st.tuples(st.just("empty_file"), INDEX),
)
FIELD_OPS = st.one_of(
    st.tuples(st.just("field"), INDEX, INDEX, INDEX, st.sampled_from(["empty", "drop", "add", "replace"]), TEXT),
    st.tuples(st.just("label"), INDEX, INDEX, UNSEEN),
)
TEXT_OPS = st.one_of(BYTE_OPS, LINE_OPS, FIELD_OPS)


@dataclass
class Layout:
    """Where a line-based format keeps its fields: the separator and the label's field (None: the
    whole line is the label)."""

    sep: str | None  # None: any run of whitespace
    label: int | None = -1
    skip_line: Callable[[str], bool] = field(default=lambda line: not line.strip())


def _pick(keys: list[str], k: int) -> str:
    return keys[k % len(keys)]


def apply_text_op(files: dict[str, bytes], keys: list[str], op: tuple, layout: Layout) -> None:
    kind, key = op[0], _pick(keys, op[1])
    b = files[key]
    if kind in ("flip", "truncate", "insert_bytes", "delete_bytes"):
        files[key] = apply_byte_op(b, op)
        return
    lines = b.split(b"\n")
    if kind == "empty_file":
        files[key] = b""
        return
    i = op[2] % len(lines)
    if kind == "delete_line":
        del lines[i]
    elif kind == "duplicate_line":
        lines.insert(i, lines[i])
    elif kind == "insert_line":
        lines.insert(i, op[3])
    elif kind == "swap_lines":
        j = op[3] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    else:  # field / label: on a line that has fields (not blank, not a comment)
        text = [line.decode("utf-8", "surrogateescape") for line in lines]
        candidates = [k for k, t in enumerate(text) if not layout.skip_line(t)]
        if not candidates:
            return
        i = candidates[op[2] % len(candidates)]
        fields = text[i].split(layout.sep) if layout.sep else text[i].split()
        sep = layout.sep or " "
        if kind == "label":
            if layout.label is None:
                fields = [op[3]]
            else:
                fields[layout.label % len(fields)] = op[3]
        else:
            j, action, value = op[3] % len(fields), op[4], op[5]
            if action == "empty":
                fields[j] = ""
            elif action == "drop":
                del fields[j]
            elif action == "add":
                fields.insert(j, value)
            else:
                fields[j] = value
        text[i] = sep.join(fields)
        lines = [t.encode("utf-8", "surrogateescape") for t in text]
    files[key] = b"\n".join(lines)


def apply_byte_op(b: bytes, op: tuple) -> bytes:
    kind, at = op[0], int(op[2] * len(b))
    if kind == "flip":
        return b[:at] + bytes([b[at] ^ op[3]]) + b[at + 1:] if b else b
    if kind == "truncate":
        return b[:at]
    if kind == "insert_bytes":
        return b[:at] + op[3] + b[at:]
    return b[:at] + b[at + op[3]:]  # delete_bytes


# -- images -------------------------------------------------------------------------------------

def image_bytes(seed: int, fmt: str, size: tuple[int, int] = (16, 12)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 2] //= 2  # some structure: a darker top half
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


IMAGE_OPS = st.one_of(
    st.tuples(st.just("im_delete"), INDEX),
    st.tuples(st.just("im_empty"), INDEX),
    st.tuples(st.just("im_truncate"), INDEX, FRACTION),  # a truncated JPEG passes verify()
    st.tuples(st.just("im_short_data"), INDEX),  # a PNG cut at a chunk boundary passes verify() too
    st.tuples(st.just("im_flip"), INDEX, FRACTION, st.integers(1, 255)),
    st.tuples(st.just("im_garbage"), INDEX, st.binary(max_size=64)),
    st.tuples(st.just("im_other_format"), INDEX),  # a PNG saved under a .jpg name (PIL reads the content)
)


def apply_image_op(files: dict[str, bytes | None], keys: list[str], op: tuple) -> None:
    kind, key = op[0], _pick(keys, op[1])
    b = files.get(key)
    if b is None:
        return  # already deleted
    if kind == "im_delete":
        del files[key]
    elif kind == "im_empty":
        files[key] = b""
    elif kind == "im_truncate":
        files[key] = b[: int(op[2] * len(b))]
    elif kind == "im_short_data":
        files[key] = short_png(b) if b.startswith(b"\x89PNG") else b[: len(b) * 3 // 4]
    elif kind == "im_flip":
        files[key] = apply_byte_op(b, ("flip", 0, op[2], op[3]))
    elif kind == "im_garbage":
        files[key] = op[2]
    else:
        files[key] = image_bytes(len(b), "PNG" if key.endswith(".jpg") else "JPEG")


# -- the formats --------------------------------------------------------------------------------
# Base files: small and valid, written like the real ones (SST-2 stsa.binary, UD English-EWT,
# CoNLL-2003, Multi30k, Karpathy's dataset_flickr8k.json, tiny-shakespeare) but our own sentences.

SST = {
    "train": ["1 a warm , funny and quietly moving film about growing up .",
              "0 the plot wanders off and never finds its way back .",
              "1 the cast is terrific , and the script gives them room to breathe .",
              "0 two hours of noise , with nothing to say .",
              "1 an honest little gem .",
              "0 it 's the kind of movie that makes you check your watch ."],
    "dev": ["1 a sharp and tender comedy .", "0 dull , flat and far too long .", "1 the music alone is worth it ."],
    "test": ["0 nothing here works .", "1 a joy from start to finish .", "0 a film with no reason to exist ."],
}

CSV_ROWS = {
    "train": [("a warm, funny film", "pos"), ('"quotes" inside, and commas', "neg"), ("great acting", "pos"),
              ("the plot wanders", "neg"), ("an honest gem", "pos"), ("two hours of noise", "neg")],
    "val": [("sharp and tender", "pos"), ("dull and flat", "neg"), ("the music, alone, is worth it", "pos")],
    "test": [("nothing works", "neg"), ("a joy", "pos"), ("no reason to exist", "neg")],
}

CONLLU = {
    "train": """# sent_id = fuzz-train-1
# text = The cat sat on the mat.
1\tThe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\tMood=Ind|Tense=Past\t0\troot\t_\t_
4\ton\ton\tADP\tIN\t_\t6\tcase\t_\t_
5\tthe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t6\tdet\t_\t_
6\tmat\tmat\tNOUN\tNN\tNumber=Sing\t3\tobl\t_\tSpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = fuzz-train-2
# text = I don't know.
1\tI\tI\tPRON\tPRP\tCase=Nom|Number=Sing|Person=1\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\tMood=Ind|Tense=Pres\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\tVerbForm=Inf\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

""",
    "dev": """# sent_id = fuzz-dev-1
# text = Dogs bark.
1\tDogs\tdog\tNOUN\tNNS\tNumber=Plur\t2\tnsubj\t_\t_
2\tbark\tbark\tVERB\tVBP\tMood=Ind\t0\troot\t_\tSpaceAfter=No
2.1\tloudly\tloudly\tADV\tRB\t_\t_\t_\t2:advmod\t_
3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

# sent_id = fuzz-dev-2
1\tI\tI\tPRON\tPRP\tCase=Nom\t2\tnsubj\t_\t_
2\tknow\tknow\tVERB\tVBP\tMood=Ind\t0\troot\t_\t_

""",
    "test": """# sent_id = fuzz-test-1
# text = The mat sat.
1\tThe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t2\tdet\t_\t_
2\tmat\tmat\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\tMood=Ind|Tense=Past\t0\troot\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = fuzz-test-2
# text = Cats don't sit.
1\tCats\tcat\tNOUN\tNNS\tNumber=Plur\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\tMood=Ind\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tsit\tsit\tVERB\tVB\tVerbForm=Inf\t0\troot\t_\t_

""",
}

CONLL = {
    "train": "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n"
             ". . O O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\nBRUSSELS NNP B-NP B-LOC\n",
    "val": "Paris NNP B-NP B-LOC\nwelcomes VBZ B-VP O\nPeter NNP B-NP B-PER\n. . O O\n\nEU NNP B-NP B-ORG\n",
    "test": "German JJ B-NP B-MISC\nofficials NNS I-NP O\n. . O O\n\nBlackburn NNP B-NP B-PER\nrejects VBZ B-VP O\n",
}

PAIRS = {
    "train": [("two dogs play in the snow .", "zwei hunde spielen im schnee ."),
              ("a man rides a red bike .", "ein mann fährt ein rotes fahrrad ."),
              ("a girl reads a book .", "ein mädchen liest ein buch ."),
              ("two men play in the street .", "zwei männer spielen auf der straße ."),
              ("a dog runs .", "ein hund rennt .")],
    "val": [("a man reads .", "ein mann liest ."), ("two dogs run .", "zwei hunde rennen ."),
            ("a girl plays .", "ein mädchen spielt .")],
    "test_2016_flickr": [("a girl rides a bike .", "ein mädchen fährt fahrrad ."),
                         ("a dog in the snow .", "ein hund im schnee ."), ("two men read .", "zwei männer lesen .")],
}

_WORDS = ("thou art the king of this fair isle and I thy humble servant speak of love and war "
          "my lord the night is young and we shall see the morning come").split()


def _verse(n_lines: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    speakers = ["KING HENRY:", "FIRST CITIZEN:", "JULIET:", "GLOUCESTER:"]
    out = []
    for k in range(n_lines):
        if k % 4 == 0:
            out.append("\n" + speakers[(k // 4) % len(speakers)])
        words = rng.choice(_WORDS, size=int(rng.integers(5, 10)))
        out.append(" ".join(words).capitalize() + rng.choice([",", ".", ";", "!", "?"]))
    return "\n".join(out) + "\n"


@functools.cache
def base_sst() -> dict[str, bytes]:
    return {f"stsa.binary.{s}": ("\n".join(lines) + "\n").encode() for s, lines in SST.items()}


@functools.cache
def base_csv(suffix: str) -> dict[str, bytes]:
    sep = "," if suffix == "csv" else "\t"
    out = {}
    for split, rows in CSV_ROWS.items():
        buf = io.StringIO()
        w = __import__("csv").writer(buf, delimiter=sep, lineterminator="\n")
        w.writerow(["id", "text", "label"])
        w.writerows([(k, t, y) for k, (t, y) in enumerate(rows)])
        out[f"{split}.{suffix}"] = buf.getvalue().encode()
    return out


@functools.cache
def base_parallel() -> dict[str, bytes]:
    out = {}
    for split, pairs in PAIRS.items():
        out[f"{split}.en.gz"] = ("\n".join(p[0] for p in pairs) + "\n").encode()
        out[f"{split}.de.gz"] = ("\n".join(p[1] for p in pairs) + "\n").encode()
    return out  # plain text here; gzip'ed when written


KARPATHY_IMAGES = [  # filename, split, captions
    ("1000268201_693b08cb0e.jpg", "train", ["A child in a pink dress is climbing up stairs .", "A girl going into a house ."]),
    ("1001773457_577c3a7d70.png", "train", ["A black dog and a spotted dog are fighting", "Two dogs on pavement ."]),
    ("1002674143_1b742ab4b8.jpg", "restval", ["A little girl is sitting in front of a large painted rainbow ."]),
    ("1003163366_44323f5815.png", "train", ["A man lays on a bench while his dog sits by him ."]),
    ("1007129816_e794419615.jpg", "val", ["A man in an orange hat starring at something .", "A man wears an orange hat ."]),
    ("1007320043_627395c3d8.png", "test", ["A child playing on a rope net .", "A little girl climbing on red roping ."]),
    ("1009434119_febe49276a.jpg", "val", ["A black and white dog is running in a grassy garden ."]),
    ("1012212859_01547e3f17.png", "test", ["A dog shakes its head near the shore .", "A white dog shakes on the beach ."]),
    ("1015118661_980735411b.jpg", "train", ["A boy smiles in front of a stony wall in a city ."]),
]


@functools.cache
def base_karpathy() -> dict[str, bytes]:
    files = {f"images/{name}": image_bytes(k, "JPEG" if name.endswith(".jpg") else "PNG")
             for k, (name, _, _) in enumerate(KARPATHY_IMAGES)}
    doc = {"dataset": "flickr8k", "images": [
        {"filename": name, "imgid": k, "split": split, "sentids": list(range(2 * k, 2 * k + len(caps))),
         "sentences": [{"tokens": c.lower().rstrip(" .").split(), "raw": c, "imgid": k} for c in caps]}
        for k, (name, split, caps) in enumerate(KARPATHY_IMAGES)]}
    files["dataset_flickr8k.json"] = json.dumps(doc).encode()
    return files


FRAME_CLIPS = {  # split -> clip -> labels (a frame each)
    "train": {"walk_01": ["walk", "walk", "run"], "run_02": ["run", "run"], "jump_03": ["stand", "walk", "walk"]},
    "val": {"walk_04": ["walk", "run"], "stand_06": ["stand", "stand"]},
    "test": {"run_05": ["run", "stand", "run"], "walk_07": ["walk", "walk"]},
}


@functools.cache
def base_frames() -> dict[str, bytes | None]:
    files, k = {}, 0
    for split, clips in FRAME_CLIPS.items():
        for clip, labels in clips.items():
            for t in range(len(labels)):
                fmt = "JPEG" if (k % 3 == 2) else "PNG"
                files[f"{split}/{clip}/{t:04d}.{'jpg' if fmt == 'JPEG' else 'png'}"] = image_bytes(k, fmt, (10, 8))
                k += 1
            files[f"{split}/{clip}/labels.txt"] = ("\n".join(labels) + "\n").encode()
    return files


@functools.cache
def base_text() -> dict[str, bytes]:
    return {"input.txt": _verse(60, 1).encode()}


# -- the tests ----------------------------------------------------------------------------------

def corrupted(base: dict[str, bytes], ops: list[tuple], layout: Layout) -> dict[str, bytes]:
    files = dict(base)
    keys = sorted(files)
    for op in ops:
        apply_text_op(files, keys, op, layout)
    return files


def line_files(names: Callable[[Path], list[Path]]):
    return lambda root: names_a_file(names(root), line_based=True)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(TEXT_OPS, min_size=1, max_size=3))
def _fuzz_sst2(ops):
    files = corrupted(base_sst(), ops, Layout(sep=" ", label=0))
    run_case("sst2", files, lambda root: {"root": str(root)}, sane_sequences,
             line_files(lambda root: [root / k for k in base_sst()]))


def test_sst2_labelled_lines_survive_corruption(record_property):
    _fuzz_sst2()
    report("sst2", 50, record_property)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(TEXT_OPS, min_size=1, max_size=3), suffix=st.sampled_from(["csv", "tsv"]))
def _fuzz_csv(ops, suffix):
    sep = "," if suffix == "csv" else "\t"
    files = corrupted(base_csv(suffix), ops, Layout(sep=sep, label=-1, skip_line=lambda t: not t.strip()))
    run_case("csv_text", files,
             lambda root: {"root": str(root), "train": f"train.{suffix}", "val": f"val.{suffix}",
                           "test": f"test.{suffix}"},
             sane_sequences, line_files(lambda root: [root / k for k in base_csv(suffix)]))


def test_csv_and_tsv_text_survive_corruption(record_property):
    _fuzz_csv()
    report("csv_text", 50, record_property)


CONLLU_LAYOUT = Layout(sep="\t", label=3, skip_line=lambda t: not t.strip() or t.startswith("#"))


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(TEXT_OPS, min_size=1, max_size=3))
def _fuzz_conllu(ops):
    base = {f"en_ewt-ud-{s}.conllu": text.encode() for s, text in CONLLU.items()}
    files = corrupted(base, ops, CONLLU_LAYOUT)
    run_case("conllu", files, lambda root: {"root": str(root)}, sane_sequences,
             line_files(lambda root: [root / k for k in base]))


def test_conllu_survives_corruption(record_property):
    _fuzz_conllu()
    report("conllu", 50, record_property)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(TEXT_OPS, min_size=1, max_size=3))
def _fuzz_conll(ops):
    base = {f"{s}.txt": text.encode() for s, text in CONLL.items()}
    files = corrupted(base, ops, Layout(sep=None, label=-1))
    run_case("conll", files, lambda root: {"root": str(root), "train": "train.txt", "val": "val.txt",
                                           "test": "test.txt"},
             sane_sequences, line_files(lambda root: [root / k for k in base]))


def test_conll_survives_corruption(record_property):
    _fuzz_conll()
    report("conll", 50, record_property)


GZ_OPS = st.one_of(  # on the compressed bytes: a broken gzip stream
    st.tuples(st.just("flip"), INDEX, FRACTION, st.integers(1, 255)),
    st.tuples(st.just("truncate"), INDEX, FRACTION),
    st.tuples(st.just("insert_bytes"), INDEX, FRACTION, PAYLOAD),
)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(st.tuples(st.booleans(), TEXT_OPS), max_size=3),
       gz_ops=st.one_of(st.just(()), st.just(()), st.tuples(GZ_OPS)))
def _fuzz_parallel(ops, gz_ops):
    base = base_parallel()
    files, keys, layout = dict(base), sorted(base), Layout(sep=" ", label=None)
    for both, op in ops:  # both: the same line op on the partner file too (the files stay aligned)
        apply_text_op(files, keys, op, layout)
        key = _pick(keys, op[1])
        partner = key.replace(".en.", ".de.") if ".en." in key else key.replace(".de.", ".en.")
        if both and op[0] in ("delete_line", "duplicate_line", "insert_line", "swap_lines"):
            apply_text_op(files, [partner], op, layout)
    files = {k: gzip.compress(v, mtime=0) for k, v in files.items()}
    keys = sorted(files)
    for op in gz_ops:
        files[_pick(keys, op[1])] = apply_byte_op(files[_pick(keys, op[1])], op)
    run_case("parallel_files", files, lambda root: {"root": str(root)}, sane_sequences,
             line_files(lambda root: [root / k for k in base]))


def test_parallel_files_survive_corruption(record_property):
    _fuzz_parallel()
    report("parallel_files", 50, record_property)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(st.one_of(BYTE_OPS, LINE_OPS), min_size=1, max_size=3))
def _fuzz_text_file(ops):
    files = corrupted(base_text(), ops, Layout(sep=None))
    # small streams so that a few KB make a split (the yaml's 64 streams of 100 need 13 KB)
    run_case("text_file", files,
             lambda root: {"path": str(root / "input.txt"), "batch_size": 4, "eval_batch_size": 4, "bptt": 20},
             sane_text, lambda root: names_a_file([root / "input.txt"], line_based=False))


def test_text_file_survives_corruption(record_property):
    _fuzz_text_file()
    report("text_file", 50, record_property)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**20) | st.floats() | st.text(max_size=6),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=3),
                          max_leaves=4)
ENTRY_KEY = st.sampled_from(["filename", "split", "sentences", "filepath", "imgid"])
SENTENCE_KEY = st.sampled_from(["tokens", "raw"])
JSON_OPS = st.one_of(
    st.tuples(st.just("j_del"), INDEX, ENTRY_KEY),
    st.tuples(st.just("j_set"), INDEX, ENTRY_KEY, JSON_VALUE),
    st.tuples(st.just("j_split"), INDEX, st.sampled_from(["train", "val", "test", "restval", "bogus", "", "TRAIN"])),
    st.tuples(st.just("j_sentence"), INDEX, INDEX, st.none() | SENTENCE_KEY, JSON_VALUE),
    st.tuples(st.just("j_del_sentence"), INDEX, INDEX, st.none() | SENTENCE_KEY),
    st.tuples(st.just("j_entry"), INDEX, JSON_VALUE),
    st.tuples(st.just("j_duplicate"), INDEX),
    st.tuples(st.just("j_filename"), INDEX, st.sampled_from(["missing.jpg", "", "../dataset_flickr8k.json", "a\x00b.jpg",
                                                             "images", "/", "☃.png"])),
    st.tuples(st.just("j_top"), st.sampled_from(["images", "doc"]), JSON_VALUE),
)


def apply_json_op(doc, op: tuple):
    kind = op[0]
    images = doc.get("images") if isinstance(doc, dict) else None
    if kind == "j_top":
        if op[1] == "doc":
            return op[2]
        if isinstance(doc, dict):
            doc["images"] = op[2]
        return doc
    if not isinstance(images, list) or not images:
        return doc
    k = op[1] % len(images)
    im = images[k]
    if kind == "j_entry":
        images[k] = op[2]
    elif kind == "j_duplicate":
        images.insert(k, json.loads(json.dumps(im)))
    elif not isinstance(im, dict):
        return doc
    elif kind == "j_del":
        im.pop(op[2], None)
    elif kind == "j_set":
        im[op[2]] = op[3]
    elif kind == "j_split":
        im["split"] = op[2]
    elif kind == "j_filename":
        im["filename"] = op[2]
    elif isinstance(im.get("sentences"), list) and im["sentences"]:
        sentences = im["sentences"]
        j = op[2] % len(sentences)
        if kind == "j_sentence":
            if op[3] is None:
                sentences[j] = op[4]
            elif isinstance(sentences[j], dict):
                sentences[j][op[3]] = op[4]
        elif op[3] is None:
            del sentences[j]
        elif isinstance(sentences[j], dict):
            sentences[j].pop(op[3], None)
    return doc


@settings(FUZZ, max_examples=100)
@given(json_ops=st.lists(JSON_OPS, max_size=3), byte_ops=st.one_of(st.just(()), st.just(()), st.tuples(BYTE_OPS)),
       image_ops=st.lists(IMAGE_OPS, max_size=2), unseen=st.booleans())
def _fuzz_karpathy(json_ops, byte_ops, image_ops, unseen):
    files = dict(base_karpathy())
    doc = json.loads(files["dataset_flickr8k.json"])
    if unseen:  # words never seen in training, in a val caption
        doc["images"][4]["sentences"][0]["tokens"] = ["zebra", "quokka"]
    for op in json_ops:
        doc = apply_json_op(doc, op)
    text = json.dumps(doc).encode()
    for op in byte_ops:
        text = apply_byte_op(text, op)
    files["dataset_flickr8k.json"] = text
    image_keys = sorted(k for k in files if k.startswith("images/"))
    for op in image_ops:
        apply_image_op(files, image_keys, op)
    run_case("karpathy", files,
             lambda root: {"json_path": str(root / "dataset_flickr8k.json"), "image_dir": str(root / "images"),
                           "image_size": 24, "num_workers": 0},
             sane_captions, lambda root: names_a_file([root / "dataset_flickr8k.json"], line_based=False))


def test_karpathy_captions_survive_corruption(record_property):
    _fuzz_karpathy()
    report("karpathy", 50, record_property)


FRAME_OPS = st.one_of(
    st.tuples(st.just("fr_labels"), TEXT_OPS),
    st.tuples(st.just("fr_image"), IMAGE_OPS),
    st.tuples(st.just("fr_no_labels"), INDEX),
    st.tuples(st.just("fr_empty_clip"), st.sampled_from(SPLITS)),
    st.tuples(st.just("fr_extra_frame"), INDEX),
    st.tuples(st.just("fr_stray"), INDEX, st.sampled_from(["notes.md", "Thumbs.db", "sub.png/"])),
)


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(FRAME_OPS, min_size=1, max_size=3))
def _fuzz_frames(ops):
    files = dict(base_frames())
    for op in ops:
        labels = sorted(k for k in files if k.endswith("labels.txt"))
        images = sorted(k for k, v in files.items() if v is not None and not k.endswith("labels.txt"))
        clips = sorted({k.rsplit("/", 1)[0] for k in base_frames()})
        if op[0] == "fr_labels" and labels:
            apply_text_op(files, labels, op[1], Layout(sep=None, label=None))
        elif op[0] == "fr_image" and images:
            apply_image_op(files, images, op[1])
        elif op[0] == "fr_no_labels" and labels:
            del files[_pick(labels, op[1])]
        elif op[0] == "fr_empty_clip":
            files[f"{op[1]}/empty_clip"] = None
        elif op[0] == "fr_extra_frame" and images:
            src = _pick(images, op[1])
            files[src.rsplit("/", 1)[0] + "/9999." + src.rsplit(".", 1)[1]] = files[src]
        elif op[0] == "fr_stray":
            name = op[2]
            files[f"{_pick(clips, op[1])}/{name.rstrip('/')}"] = None if name.endswith("/") else b"stray\n"
    run_case("frame_folders", files, lambda root: {"root": str(root), "num_workers": 0}, sane_sequences,
             lambda root: names_a_file([root], line_based=False))


def test_frame_folders_survive_corruption(record_property):
    _fuzz_frames()
    report("frame_folders", 50, record_property)


# -- the base sets are valid (else the fuzzing above would test nothing) --------------------------

@pytest.mark.parametrize("name", ["sst2", "csv_text", "conllu", "conll", "parallel_files", "text_file", "karpathy",
                                  "frame_folders"])
def test_the_uncorrupted_files_load_cleanly(name):
    bases = {
        "sst2": (base_sst(), lambda r: {"root": str(r)}),
        "csv_text": (base_csv("csv"), lambda r: {"root": str(r), "train": "train.csv", "val": "val.csv",
                                                 "test": "test.csv"}),
        "conllu": ({f"en_ewt-ud-{s}.conllu": t.encode() for s, t in CONLLU.items()}, lambda r: {"root": str(r)}),
        "conll": ({f"{s}.txt": t.encode() for s, t in CONLL.items()},
                  lambda r: {"root": str(r), "train": "train.txt", "val": "val.txt", "test": "test.txt"}),
        "parallel_files": ({k: gzip.compress(v) for k, v in base_parallel().items()}, lambda r: {"root": str(r)}),
        "text_file": (base_text(), lambda r: {"path": str(r / "input.txt"), "batch_size": 4, "eval_batch_size": 4,
                                              "bptt": 20}),
        "karpathy": (base_karpathy(), lambda r: {"json_path": str(r / "dataset_flickr8k.json"),
                                                 "image_dir": str(r / "images"), "image_size": 24, "num_workers": 0}),
        "frame_folders": (base_frames(), lambda r: {"root": str(r), "num_workers": 0}),
    }
    sane = {"text_file": sane_text, "karpathy": sane_captions}.get(name, sane_sequences)
    files, overrides = bases[name]
    with tempfile.TemporaryDirectory() as tmp:
        write_files(Path(tmp), files)
        outcome = attempt(name, {**overrides(Path(tmp)), "on_bad": "error"}, sane)
    assert isinstance(outcome, Ok), outcome
