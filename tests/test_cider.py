"""Tests for zoo.metrics.cider.CIDErD.

The expected numbers below were produced by pycocoevalcap 1.2 (numpy 2.4.6):
``pycocoevalcap.cider.cider.Cider().compute_score(gts, res)`` with
``gts = {i: CORPUS_TARGET[i]}`` and ``res = {i: [CORPUS_PREDS[i]]}`` on exactly the
pre-tokenised strings below (no PTBTokenizer). pycocoevalcap is not imported here.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from zoo.metrics.cider import CIDErD, _word_id

CORPUS_PREDS = [
    "a man riding a wave on top of a surfboard",  # identical to a reference
    "two dogs playing with a frisbee in the grass",  # close paraphrase
    "a plate of food with broccoli and rice",
    "purple elephant sings opera loudly tonight",  # all wrong words
    "a",  # one word that occurs in every image's references -> idf 0
    "",  # empty candidate
    "a red double decker bus driving down a city street next to a tall building",  # long
]
CORPUS_TARGET = [
    [
        "a man riding a wave on top of a surfboard",
        "a surfer rides a large wave in the ocean",
        "a person on a surfboard riding a wave",
        "man surfing on a big wave",
    ],
    [
        "two dogs play with a frisbee on the grass",
        "a couple of dogs playing in a field",
        "two dogs running after a frisbee",
    ],
    [
        "a plate with broccoli rice and chicken",
        "a white plate topped with rice and vegetables",
        "food on a plate including broccoli",
        "a close up of a plate of food",
        "a meal of rice chicken and broccoli on a plate",
    ],
    [
        "a cat sitting on a wooden bench",
        "a black cat rests on a bench outside",
        "cat on a bench in the park",
    ],
    [
        "a kitchen with a stove and a sink",
        "an empty kitchen with white cabinets",
        "a small kitchen with a window",
        "the kitchen has a stove a sink and a refrigerator",
    ],
    [
        "a train traveling down the tracks",
        "a train on the railroad tracks near a station",
        "a long train pulling into a station",
    ],
    [
        "a red double decker bus on a city street",
        "a double decker bus driving down the street",
        "a red bus parked next to a building",
        "a tour bus in the city",
    ],
]

# pycocoevalcap 1.2, Cider() on (CORPUS_TARGET, CORPUS_PREDS).
CORPUS_SCORE = 1.4231647163479255
CORPUS_PER_IMAGE = [
    3.5627610839052077,
    2.3767171651258474,
    2.3393721563477596,
    0.0,
    0.0,
    0.0,
    1.6833026090566647,
]

# pycocoevalcap 1.2, Cider() on (CORPUS_TARGET, SHUFFLED_PREDS): every caption on the wrong image.
SHUFFLED_PREDS = CORPUS_PREDS[1:] + CORPUS_PREDS[:1]
SHUFFLED_SCORE = 0.01609703031945187
SHUFFLED_PER_IMAGE = [
    0.027926933974327935,
    0.06611495105077698,
    0.0,
    0.0,
    0.0,
    0.017944919818725626,
    0.0006924073923325255,
]

# pycocoevalcap 1.2, Cider() on a single image: log(#images) = 0 makes every weight 0 -> 0.0.
SINGLE_PREDS = CORPUS_PREDS[:1]
SINGLE_TARGET = CORPUS_TARGET[:1]
SINGLE_SCORE = 0.0

REL = 1e-6


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=REL, abs_tol=1e-12)


def _check(metric: CIDErD, score: float, per_image: list[float]) -> None:
    got = metric.compute()
    assert got.ndim == 0 and got.is_floating_point()
    assert _close(got.item(), score), (got.item(), score)
    got_per = metric.compute_per_image()
    assert got_per.shape == (len(per_image),)
    for a, b in zip(got_per.tolist(), per_image):
        assert _close(a, b), (got_per.tolist(), per_image)


def test_matches_pycocoevalcap_corpus() -> None:
    metric = CIDErD()
    metric.update(CORPUS_PREDS, CORPUS_TARGET)
    _check(metric, CORPUS_SCORE, CORPUS_PER_IMAGE)


def test_matches_pycocoevalcap_corpus_float64() -> None:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        metric = CIDErD()
        metric.update(CORPUS_PREDS, CORPUS_TARGET)
        assert metric.compute().dtype == torch.float64
        assert math.isclose(metric.compute().item(), CORPUS_SCORE, rel_tol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_matches_pycocoevalcap_shuffled() -> None:
    metric = CIDErD()
    metric.update(SHUFFLED_PREDS, CORPUS_TARGET)
    _check(metric, SHUFFLED_SCORE, SHUFFLED_PER_IMAGE)


def test_single_image_scores_zero() -> None:
    metric = CIDErD()
    metric.update(SINGLE_PREDS, SINGLE_TARGET)
    _check(metric, SINGLE_SCORE, [0.0])


def test_perfect_beats_shuffled() -> None:
    perfect = CIDErD()
    perfect.update([refs[0] for refs in CORPUS_TARGET], CORPUS_TARGET)
    shuffled = CIDErD()
    shuffled.update([refs[0] for refs in CORPUS_TARGET[1:] + CORPUS_TARGET[:1]], CORPUS_TARGET)
    assert perfect.compute() > 10 * shuffled.compute()
    assert perfect.compute() > 1.0


def test_batched_updates_equal_single_update() -> None:
    whole = CIDErD()
    whole.update(CORPUS_PREDS, CORPUS_TARGET)
    batched = CIDErD()
    for start in range(0, len(CORPUS_PREDS), 3):
        batched.update(CORPUS_PREDS[start : start + 3], CORPUS_TARGET[start : start + 3])
    batched.update([], [])  # empty batches are allowed
    assert torch.equal(batched.compute_per_image(), whole.compute_per_image())
    assert torch.equal(batched.compute(), whole.compute())


def test_merge_state_of_shards_equals_one_instance() -> None:
    whole = CIDErD()
    whole.update(CORPUS_PREDS, CORPUS_TARGET)

    # merge_state(other) puts other's data before this instance's data.
    first, second = CIDErD(), CIDErD()
    first.update(CORPUS_PREDS[:3], CORPUS_TARGET[:3])
    second.update(CORPUS_PREDS[3:5], CORPUS_TARGET[3:5])
    second.update(CORPUS_PREDS[5:], CORPUS_TARGET[5:])
    second.merge_state(first)
    assert torch.equal(second.compute_per_image(), whole.compute_per_image())
    assert torch.equal(second.compute(), whole.compute())

    # A shard alone sees a different document frequency, so its score differs.
    shard = CIDErD()
    shard.update(CORPUS_PREDS[:3], CORPUS_TARGET[:3])
    assert not _close(shard.compute().item(), whole.compute().item())


def test_simulated_ddp_cat_of_states() -> None:
    """Concatenate each tensor state across two "ranks" as torchmetrics' cat reduction does."""
    whole = CIDErD()
    whole.update(CORPUS_PREDS, CORPUS_TARGET)
    rank0, rank1 = CIDErD(), CIDErD()
    rank0.update(CORPUS_PREDS[:4], CORPUS_TARGET[:4])
    rank1.update(CORPUS_PREDS[4:], CORPUS_TARGET[4:])

    states0, states1 = rank0.metric_state, rank1.metric_state
    gathered = CIDErD()
    for name in states0:
        assert all(isinstance(t, torch.Tensor) and t.dtype == torch.int64 for t in states0[name])
        setattr(gathered, name, torch.cat([torch.cat(states0[name]), torch.cat(states1[name])]))
    gathered._update_count = 1  # avoid the "compute before update" warning
    assert torch.equal(gathered.compute_per_image(), whole.compute_per_image())
    assert torch.equal(gathered.compute(), whole.compute())


def test_empty_candidates() -> None:
    metric = CIDErD()
    metric.update(["", ""], [["a dog", "the dog runs"], ["a cat", "cat on a mat"]])
    assert metric.compute().item() == 0.0
    assert metric.compute_per_image().tolist() == [0.0, 0.0]


def test_compute_without_update_returns_zero() -> None:
    metric = CIDErD()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert metric.compute().item() == 0.0
    assert metric.compute_per_image().shape == (0,)


def test_reset() -> None:
    metric = CIDErD()
    metric.update(SHUFFLED_PREDS, CORPUS_TARGET)
    metric.compute()
    metric.reset()
    metric.update(CORPUS_PREDS, CORPUS_TARGET)
    assert _close(metric.compute().item(), CORPUS_SCORE)


def test_mismatched_lengths_raise() -> None:
    metric = CIDErD()
    with pytest.raises(ValueError, match="same length"):
        metric.update(CORPUS_PREDS[:2], CORPUS_TARGET[:3])


def test_image_without_references_raises() -> None:
    metric = CIDErD()
    with pytest.raises(ValueError, match="no references"):
        metric.update(["a dog", "a cat"], [["a dog"], []])


def test_bare_strings_rejected() -> None:
    metric = CIDErD()
    with pytest.raises(TypeError):
        metric.update("a dog", [["a dog"]])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        metric.update(["a dog"], ["a dog"])  # type: ignore[list-item]


def test_tokenisation_is_whitespace_only() -> None:
    base = CIDErD()
    base.update(CORPUS_PREDS, CORPUS_TARGET)
    spaced = CIDErD()
    spaced.update(["  " + p.replace(" ", " \t ") + "\n" for p in CORPUS_PREDS], CORPUS_TARGET)
    assert torch.equal(spaced.compute_per_image(), base.compute_per_image())

    # No lower-casing: "A" and "a" are different tokens.
    upper = CIDErD()
    upper.update([CORPUS_PREDS[0].upper()] + CORPUS_PREDS[1:], CORPUS_TARGET)
    assert upper.compute_per_image()[0].item() == 0.0


def test_word_ids_are_stable() -> None:
    # blake2b(word, digest_size=8), little-endian, top bit cleared; must never depend on the process.
    assert _word_id("a") == 3405396810240292928
    assert _word_id("surfboard") == 7617025963643003910


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        CIDErD(n=0)
    with pytest.raises(ValueError):
        CIDErD(sigma=0.0)


def test_no_warnings_on_normal_use() -> None:
    metric = CIDErD()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.update(CORPUS_PREDS, CORPUS_TARGET)
        metric.compute()


def test_corpus_cider_is_cider_d_with_the_corpus_document_frequencies():
    """The SCST reward: each caption scored alone, with the idf of the whole training corpus, is
    what CIDEr-D gives that caption when the metric sees the whole corpus."""
    from zoo.metrics.cider import CIDErD, CorpusCIDErD

    refs = [["a red circle", "a small red circle", "red circle on the left"],
            ["two blue squares", "blue squares", "a pair of blue squares"],
            ["a green star above a circle", "a star over a circle"],
            ["a red square", "the square is red"]]
    captions = ["a red circle", "blue squares", "a star", "a red circle"]
    metric = CIDErD()
    metric.update(captions, refs)
    expected = metric.compute_per_image().tolist()
    got = CorpusCIDErD(refs).scores(captions, [0, 1, 2, 3])
    assert got == pytest.approx(expected, abs=1e-6) and got[0] > got[3]  # (the metric returns float32)
