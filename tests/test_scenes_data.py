"""The harder built-in captioning set (``data=scenes``): deterministic, five different captions
per image, every caption true of the scene it describes, varied phrasing, and a run on it.

Truth is checked by reading each caption back with a small grammar of this file's own (its own
table of what each phrase means, not the generator's) and finding objects of the scene that
make every part of it true: each noun phrase names a different object with those attributes,
a count is the number of such objects, a relation holds between the objects it joins, a place
and a background are the scene's.
"""
from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from conftest import QUIET, TINY_CAPTIONING, check_metrics, compose

from zoo.data.scenes import COLOURS, SHAPES, ScenesCaptions, make_split

SIZE = 32

# -- what each phrase means (this file's own reading) -------------------------------------------
NOUNS = {"circle": "circle", "disk": "circle", "ball": "circle", "square": "square", "box": "square",
         "triangle": "triangle", "star": "star", "diamond": "diamond", "rhombus": "diamond", "cross": "cross",
         "plus sign": "cross"}
PLURALS = {"circles": "circle", "disks": "circle", "balls": "circle", "squares": "square", "boxes": "square",
           "triangles": "triangle", "stars": "star", "diamonds": "diamond", "rhombuses": "diamond",
           "crosses": "cross", "plus signs": "cross"}
SIZE_OF = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
NUMBER = {"one": 1, "two": 2, "three": 3, "four": 4}
RELATION = {"to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right",
            "above": "above", "over": "above", "below": "below", "under": "below", "beneath": "below",
            "next to": "next", "beside": "next", "in front of": "front", "behind": "behind"}
PLACE = {"in the top left corner": (0, 0), "at the top left": (0, 0), "at the top": (1, 0), "near the top": (1, 0),
         "in the top right corner": (2, 0), "at the top right": (2, 0), "on the left": (0, 1),
         "on the left side": (0, 1), "in the middle": (1, 1), "in the center": (1, 1), "on the right": (2, 1),
         "on the right side": (2, 1), "in the bottom left corner": (0, 2), "at the bottom left": (0, 2),
         "at the bottom": (1, 2), "near the bottom": (1, 2), "in the bottom right corner": (2, 2),
         "at the bottom right": (2, 2)}
BACKGROUND = {"a plain background": "plain", "an even background": "plain", "a gradient background": "gradient",
              "a shaded background": "gradient", "a blotchy background": "blotchy", "a mottled background": "blotchy",
              "a striped background": "striped", "stripes": "striped", "a checkered background": "checkered",
              "a checkerboard": "checkered"}
FILLER = ("there is", "there are", "a picture of", "and")
KINDS = ("shapes", "objects", "things", "shape")


def _holds(rel: str, a, b, i: int, j: int, overlaps: np.ndarray) -> bool:
    """Is ``a rel b`` true? Left/right/above/below: clearly along that axis more than across it."""
    dx, dy = b.x - a.x, b.y - a.y
    along = {"left": dx, "right": -dx, "above": dy, "below": -dy}
    if rel in along:
        across = abs(dy) if rel in ("left", "right") else abs(dx)
        return along[rel] > 0.1 * SIZE and along[rel] >= across
    if rel == "next":
        return abs(dx) >= abs(dy) and math.hypot(dx, dy) < 0.45 * SIZE
    # in front: drawn later (the list is back to front) and covering part of b
    return overlaps[i, j] > 0 and (i > j if rel == "front" else i < j)


def _phrase(words: list[str], k: int, table) -> tuple[str, int] | None:
    """The longest phrase of ``table`` that starts at word k: (phrase, words used)."""
    for n in range(6, 0, -1):
        p = " ".join(words[k:k + n])
        if len(words) - k >= n and p in table:
            return p, n
    return None


def parse(caption: str) -> list[tuple]:
    """A caption -> its parts: ('one', size, colour, shape), ('group', n, colour, shape), ('total', n),
    ('others', n), ('rel', r), ('place', cell), ('bg', kind). Any word it cannot read fails."""
    words, out, k = caption.split(), [], 0
    while k < len(words):
        w = words[k]
        if (hit := _phrase(words, k, RELATION)) and not (w == "on" or _phrase(words, k, PLACE)):
            out.append(("rel", RELATION[hit[0]]))
            k += hit[1]
        elif hit := _phrase(words, k, PLACE):
            out.append(("place", PLACE[hit[0]]))
            k += hit[1]
        elif w == "on" and (hit := _phrase(words, k + 1, BACKGROUND)):
            out.append(("bg", BACKGROUND[hit[0]]))
            k += 1 + hit[1]
        elif (hit := _phrase(words, k, FILLER)) and not (w == "a" and _phrase(words, k + 1, {**SIZE_OF, **COLOURS, **NOUNS})):
            k += hit[1]
        elif w in ("a", "an", "one") or w in NUMBER:
            k += 1
            size = SIZE_OF.get(words[k]) if k < len(words) else None
            k += size is not None
            colour = words[k] if k < len(words) and words[k] in COLOURS else None
            k += colour is not None
            if w in NUMBER and k < len(words) and words[k] == "other":  # "and two other shapes"
                assert words[k + 1] in KINDS, caption
                out.append(("others", NUMBER[w]))
                k += 2
            elif w in NUMBER and w != "one" and k < len(words) and words[k] in KINDS:  # "three shapes ..."
                assert size is None and colour is None, caption
                out.append(("total", NUMBER[w]))
                k += 1
            elif noun := _phrase(words, k, NOUNS):
                out.append(("one", size, colour, NOUNS[noun[0]]))
                k += noun[1]
            else:
                noun = _phrase(words, k, PLURALS)
                assert noun and w in NUMBER and size is None, f"cannot read {caption!r} at word {k}"
                out.append(("group", NUMBER[w], colour, PLURALS[noun[0]]))
                k += noun[1]
        else:
            raise AssertionError(f"cannot read {caption!r} at word {k} ({w!r})")
    return out


def true_of(caption: str, scene) -> bool:
    """Some choice of different objects makes every part of the caption true of the scene."""
    parts, things, n = parse(caption), scene.things, len(scene.things)

    def like(t, size, colour, shape) -> bool:
        return t.shape == shape and colour in (None, t.colour) and size in (None, t.size)

    groups = []  # the members of each counted group ("two red squares": every red square, and two of them)
    for p in parts:
        if p[0] == "total" and n != p[1] or p[0] == "others" and n != p[1] + 1 or p[0] == "bg" and p[1] != scene.background:
            return False
        if p[0] == "group":
            members = [i for i, t in enumerate(things) if like(t, None, p[2], p[3])]
            if len(members) != p[1]:
                return False
            groups.append(members)
        if p[0] == "place":  # only said of a lone object: its centre lies in that cell of a 3 x 3 grid
            t = things[0]
            if n != 1 or (int(3 * t.x / SIZE), int(3 * t.y / SIZE)) != p[1]:
                return False
    ones = [p for p in parts if p[0] == "one"]
    taken = {i for g in groups for i in g}
    free = [i for i in range(n) if i not in taken]
    for pick in itertools.permutations(free, len(ones)):
        if not all(like(things[i], *p[1:]) for i, p in zip(pick, ones)):
            continue
        objects, gi, oi = [], 0, 0  # the parts that name objects, in order: each a list of indices
        for p in parts:
            if p[0] == "one":
                objects.append([pick[oi]])
                oi += 1
            elif p[0] == "group":
                objects.append(groups[gi])
                gi += 1
            elif p[0] == "rel":
                objects.append(p[1])
        ok = True
        for k, item in enumerate(objects):
            if isinstance(item, str):  # a relation joins the objects named just before and after it
                left, right = objects[k - 1], objects[k + 1]
                ok &= all(_holds(item, things[i], things[j], i, j, scene.overlaps) for i in left for j in right)
        if ok:
            return True
    return False


@pytest.fixture(scope="module")
def sample():
    return make_split(200, seed=11)


def test_scenes_are_deterministic_from_the_seed():
    a_img, a_caps, _ = make_split(30, seed=3)
    b_img, b_caps, _ = make_split(30, seed=3)
    c_img, c_caps, _ = make_split(30, seed=4)
    assert np.array_equal(a_img, b_img) and a_caps == b_caps
    assert not np.array_equal(a_img, c_img) and a_caps != c_caps
    assert a_img.shape == (30, 32, 32, 3) and a_img.dtype == np.uint8
    dm = ScenesCaptions(train_images=20, val_images=8, test_images=8, data_seed=5)
    dm.setup()
    again = ScenesCaptions(train_images=20, val_images=8, test_images=8, data_seed=5)
    again.setup()
    assert dm.splits["val"].refs == again.splits["val"].refs
    assert dm.splits["train"].refs != dm.splits["val"].refs[:8]  # splits are different streams
    assert not np.array_equal(dm.splits["test"].store.pixels, dm.splits["val"].store.pixels)


def test_every_image_has_five_different_captions_within_max_len(sample):
    _, captions, scenes = sample
    assert all(len(c) == 5 and len(set(c)) == 5 for c in captions)
    assert max(len(c.split()) for cs in captions for c in cs) <= 16
    assert Counter(len(s.things) for s in scenes).keys() == {1, 2, 3, 4}
    _, short, _ = make_split(30, seed=3, max_words=8)  # the cap holds for any data.max_len
    assert max(len(c.split()) for cs in short for c in cs) <= 8


def test_every_caption_is_true_of_its_scene(sample):
    _, captions, scenes = sample
    for caps, scene in zip(captions, scenes):
        for c in caps:
            assert true_of(c, scene), (c, scene.things, scene.background)
    said = Counter(p[0] for cs in captions for c in cs for p in parse(c))
    for part in ("one", "group", "total", "others", "rel", "place", "bg"):  # each kind of claim was checked
        assert said[part] >= 20, said


def test_the_checker_catches_false_captions(sample):
    """The reading above is strict enough to fail a wrong colour, count, relation or background."""
    _, captions, scenes = sample
    swaps = {"left": "right", "right": "left", "above": "below", "below": "above", "two": "three",
             "three": "two", "plain": "striped", "striped": "plain", "red": "blue", "blue": "red"}
    wrong = tested = 0
    for caps, scene in zip(captions, scenes):
        for c in caps:
            words = c.split()
            for k, w in enumerate(words):
                if w in swaps and not (w in ("left", "right") and "of" not in words[k:k + 2]):
                    tested += 1
                    wrong += not true_of(" ".join(words[:k] + [swaps[w]] + words[k + 1:]), scene)
                    break
    assert tested > 200 and wrong / tested > 0.9, (wrong, tested)


def test_the_drawn_objects_are_where_and_what_the_scene_says(sample):
    """At each object's centre (when no later object covers it) the image has the object's colour."""
    images, _, scenes = sample
    palette = np.array(list(COLOURS.values()), dtype=float)
    hits = total = 0
    for img, scene in zip(images, scenes):
        for k, t in enumerate(scene.things):
            if any(math.hypot(t.x - o.x, t.y - o.y) < 1.3 * o.r for o in scene.things[k + 1:]):
                continue
            x, y = int(t.x), int(t.y)
            pix = img[max(y - 1, 0): y + 2, max(x - 1, 0): x + 2].reshape(-1, 3).astype(float).mean(0)
            total += 1
            hits += list(COLOURS)[np.abs(palette - pix).sum(1).argmin()] == t.colour
    assert total > 300 and hits / total > 0.97, (hits, total)


def test_phrasing_varies_and_images_differ(sample):
    images, captions, scenes = sample
    flat = [c for cs in captions for c in cs]
    first = Counter(c.split()[0] for c in flat)
    assert len(first) >= 8 and first.most_common(1)[0][1] / len(flat) < 0.65, first
    # a caption's template: its words with colours, shapes, sizes and numbers blanked out
    blank = {**dict.fromkeys(COLOURS, "C"), **dict.fromkeys(SIZE_OF, "Z"), **dict.fromkeys(NUMBER, "N"),
             **dict.fromkeys(["circle", "disk", "ball", "square", "box", "triangle", "star", "diamond", "rhombus",
                              "cross", *PLURALS], "S")}
    templates = Counter(" ".join(blank.get(w, w) for w in c.split()) for c in flat)
    assert len(templates) > 150 and templates.most_common(1)[0][1] / len(flat) < 0.1, templates.most_common(5)
    assert len(set(flat)) > 0.75 * len(flat)
    assert {s for s in SHAPES} == {t.shape for s in scenes for t in s.things}
    assert Counter(s.background for s in scenes).most_common()[-1][1] >= 20  # every kind of background
    stats = images.reshape(len(images), -1, 3).astype(float)
    assert stats.mean(1).std(0).min() > 8 and stats.std(1).mean() > 15  # not one constant picture
    assert len({img.tobytes() for img in images}) == len(images)


def test_fast_dev_run_task_captioning_data_scenes(tmp_path):
    from zoo.run.train import train

    cfg = compose("task=captioning", "data=scenes", "trainer.fast_dev_run=true", *TINY_CAPTIONING, *QUIET)
    assert cfg.data._target_ == "zoo.data.scenes.ScenesCaptions"
    train(cfg, run_dir=tmp_path, name="scenes")
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()), {"test/bleu4", "test/cider", "test/loss"})
    spec = json.loads((tmp_path / "data_spec.json").read_text())
    assert {"star", "background"} <= set(spec["vocab"]["tokens"])  # words data=shapes never says
