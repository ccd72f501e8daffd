"""CIDEr-D for image captioning, as a DDP-syncable torchmetrics ``Metric``.

The numbers match ``pycocoevalcap.cider.cider.Cider().compute_score`` (the
reference implementation used by the COCO caption evaluation server) on the
same pre-tokenised strings.

For image ``i`` with candidate ``c_i`` and references ``S_i = {s_i1, ..., s_im}``::

    CIDEr-D(c_i, S_i) = 10 / N_ord * sum_{k=1..N_ord} 1/m * sum_j
        exp(-(l(c_i) - l(s_ij))^2 / (2 sigma^2))
        * <min(g_k(c_i), g_k(s_ij)), g_k(s_ij)> / (||g_k(c_i)|| * ||g_k(s_ij)||)

where ``N_ord = n`` (4 by default) and

* ``g_k(x)`` is the tf-idf vector of the k-grams of ``x``: the entry for k-gram
  ``w`` is ``count_x(w) * (log(I) - log(max(1, df(w))))``, ``I`` is the number of
  images given to the metric and ``df(w)`` the number of images whose
  references (any of them) contain ``w``. The raw count is used as tf (not a
  frequency); that is harmless because of the cosine normalisation.
* ``min(., .)`` is element-wise ("clipping"); the norms in the denominator are
  those of the *unclipped* vectors. The term is 0 when either norm is 0.
* ``l(x)`` is the number of **bigrams** of ``x`` (``max(len(x) - 1, 0)``), not
  its number of words; this is what pycocoevalcap does.

The corpus score returned by ``compute()`` is the plain mean over images.

Tokenisation is the caller's job: strings are split on whitespace only, with no
lower-casing and no punctuation handling (pycocoevalcap normally runs its
Java PTB tokenizer first; do the equivalent before calling ``update``).

Because the idf depends on all references seen, CIDEr-D is not decomposable
over batches. The metric therefore keeps every token (as a stable 63-bit
integer hash of the word) in ``cat``-reduced int64 tensor states and rebuilds
the n-gram statistics in ``compute()``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

_MASK_63 = (1 << 63) - 1

NGram = tuple[int, ...]


@functools.lru_cache(maxsize=1 << 17)
def _word_id(word: str) -> int:
    """Stable (process-independent) non-negative 63-bit id of a word.

    Python's ``hash`` is salted per process, so it cannot be used for state that is
    gathered across DDP ranks. Collisions are negligible (birthday bound ~2^31 words).
    """
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK_63


def _ngram_counts(tokens: Sequence[int], n: int) -> Counter[NGram]:
    """Counts of all 1..n-grams of ``tokens`` (keyed by tuples; the order is len(key))."""
    counts: Counter[NGram] = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


def _split(flat: list[int], lengths: list[int]) -> list[list[int]]:
    """Cut ``flat`` into consecutive pieces of the given lengths."""
    out, start = [], 0
    for length in lengths:
        out.append(flat[start : start + length])
        start += length
    if start != len(flat):
        raise RuntimeError(f"Corrupt CIDErD state: lengths sum to {start} but there are {len(flat)} tokens.")
    return out


class CIDErD(Metric):
    """CIDEr-D (Vedantam et al., 2015) as computed by pycocoevalcap.

    See the module docstring for the exact formula.

    Args:
        n: maximum n-gram order; the score averages orders ``1..n``.
        sigma: standard deviation of the Gaussian length penalty.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Inputs to ``update``:
        preds: one **pre-tokenised** candidate caption per image (tokens separated by
            whitespace). ``""`` is allowed and scores 0.
        target: for each image, a non-empty sequence of pre-tokenised reference captions.
            The number of references may differ between images.

    Output of ``compute``: scalar float tensor, the mean CIDEr-D over all images seen
    (across all ranks under DDP). With no images it returns ``tensor(0.)``; torchmetrics
    itself warns when ``compute`` is called before any ``update``.

    Notes:
        * The idf uses the references of *all* images given to the metric, as in
          pycocoevalcap; scores of a subset therefore differ from a full-corpus run.
          With a single image ``log(I) = 0`` so every score is 0 (same in pycocoevalcap).
        * For ``n == 4`` this matches pycocoevalcap exactly. pycocoevalcap ignores its own
          ``n`` when extracting n-grams (always 1..4), so it crashes for ``n < 4`` and
          divides by ``n`` with empty orders for ``n > 4``; here ``n`` is honoured.
        * Under DDP, every rank should call ``update`` at least once (an empty batch is
          fine): torchmetrics fills a rank with no state at all with a float tensor.
        * Memory: two int64 values per token plus a few per caption.

    Example:
        >>> metric = CIDErD()
        >>> metric.update(["a cat sits on a mat", "a dog runs"],
        ...               [["a cat is on the mat", "a cat sits on a mat"],
        ...                ["a dog is running", "the dog runs fast"]])
        >>> score = metric.compute()
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 10.0

    # All states are lists of 1-D int64 tensors (one per update), reduced by "cat".
    cand_tokens: list[Tensor]  # (sum of candidate lengths,) word ids of all candidates, back to back
    cand_lens: list[Tensor]  # (num_images,) number of tokens per candidate
    ref_tokens: list[Tensor]  # (sum of reference lengths,) word ids of all references, back to back
    ref_lens: list[Tensor]  # (num_references,) number of tokens per reference
    refs_per_image: list[Tensor]  # (num_images,) number of references per image

    def __init__(self, n: int = 4, sigma: float = 6.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"`n` must be a positive int, got {n!r}.")
        if not sigma > 0:
            raise ValueError(f"`sigma` must be positive, got {sigma!r}.")
        self.n = n
        self.sigma = float(sigma)
        for name in ("cand_tokens", "cand_lens", "ref_tokens", "ref_lens", "refs_per_image"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _ids(self, values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.int64, device=self.device)

    def update(self, preds: Sequence[str], target: Sequence[Sequence[str]]) -> None:
        """Add a batch: ``preds[i]`` is the candidate for the image with references ``target[i]``."""
        if isinstance(preds, str):
            raise TypeError("`preds` must be a sequence of strings (one per image), not a single string.")
        if len(preds) != len(target):
            raise ValueError(
                f"`preds` and `target` must have the same length (one entry per image), "
                f"got {len(preds)} and {len(target)}."
            )
        cand_tokens: list[int] = []
        cand_lens: list[int] = []
        ref_tokens: list[int] = []
        ref_lens: list[int] = []
        refs_per_image: list[int] = []
        for i, (cand, refs) in enumerate(zip(preds, target)):
            if not isinstance(cand, str):
                raise TypeError(f"preds[{i}] must be a str, got {type(cand).__name__}.")
            if isinstance(refs, str):
                raise TypeError(f"target[{i}] must be a sequence of reference strings, not a single string.")
            if len(refs) == 0:
                raise ValueError(f"target[{i}] has no references; every image needs at least one.")
            words = [_word_id(w) for w in cand.split()]
            cand_tokens.extend(words)
            cand_lens.append(len(words))
            for j, ref in enumerate(refs):
                if not isinstance(ref, str):
                    raise TypeError(f"target[{i}][{j}] must be a str, got {type(ref).__name__}.")
                words = [_word_id(w) for w in ref.split()]
                ref_tokens.extend(words)
                ref_lens.append(len(words))
            refs_per_image.append(len(refs))
        self.cand_tokens.append(self._ids(cand_tokens))
        self.cand_lens.append(self._ids(cand_lens))
        self.ref_tokens.append(self._ids(ref_tokens))
        self.ref_lens.append(self._ids(ref_lens))
        self.refs_per_image.append(self._ids(refs_per_image))

    def compute(self) -> Tensor:
        """Mean CIDEr-D over all images (scalar float tensor; 0 if there are none)."""
        scores = self._per_image_scores()
        mean = math.fsum(scores) / len(scores) if scores else 0.0
        return torch.tensor(mean, dtype=torch.get_default_dtype(), device=self.device)

    def compute_per_image(self) -> Tensor:
        """CIDEr-D of every image, in the order they were given, shape ``(num_images,)``.

        Under DDP the states are gathered first (rank-major order, like ``compute``).
        Not cached; costs the same as ``compute``.
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            scores = self._per_image_scores()
        return torch.tensor(scores, dtype=torch.get_default_dtype(), device=self.device)

    def _state_list(self, name: str) -> list[int]:
        state = getattr(self, name)
        if isinstance(state, list) and len(state) == 0:
            return []
        return dim_zero_cat(state).long().tolist()

    def _per_image_scores(self) -> list[float]:
        cand_lens = self._state_list("cand_lens")
        refs_per_image = self._state_list("refs_per_image")
        if len(cand_lens) != len(refs_per_image):
            raise RuntimeError("Corrupt CIDErD state: candidate and reference image counts differ.")
        num_images = len(cand_lens)
        if num_images == 0:
            return []

        cands = _split(self._state_list("cand_tokens"), cand_lens)  # num_images x [tokens]
        refs_flat = _split(self._state_list("ref_tokens"), self._state_list("ref_lens"))  # num_refs x [tokens]
        refs = _split(refs_flat, refs_per_image)  # num_images x num_refs_i x [tokens]  (type: list[list[list[int]]])

        ref_counts = [[_ngram_counts(r, self.n) for r in image_refs] for image_refs in refs]
        scorer = _Scorer(_doc_freq(ref_counts), num_images, self.n, self.sigma)
        return [scorer.score(_ngram_counts(cand, self.n), len(cand), scorer.references(image_refs, r_counts))
                for cand, image_refs, r_counts in zip(cands, refs, ref_counts)]


def _doc_freq(ref_counts: Sequence[Sequence[Counter]]) -> Counter:
    """Document frequency: the number of images whose references contain the n-gram."""
    doc_freq: Counter[NGram] = Counter()
    for image_refs in ref_counts:
        doc_freq.update(set().union(*image_refs))
    return doc_freq


class _Scorer:
    """CIDEr-D of candidates against references, for given document frequencies (see the module docstring)."""

    def __init__(self, doc_freq: Counter, num_images: int, n: int, sigma: float) -> None:
        self.doc_freq, self.n, self.two_sigma_sq = doc_freq, n, 2.0 * sigma ** 2
        self.log_num_images = math.log(float(num_images))  # pycocoevalcap's "ref_len"

    def tfidf(self, counts: Counter) -> tuple[list[dict], list[float]]:
        """Per-order tf-idf vectors and their L2 norms."""
        vec: list[dict] = [{} for _ in range(self.n)]
        sq_norm = [0.0] * self.n
        for ngram, tf in counts.items():
            k = len(ngram) - 1
            weight = float(tf) * (self.log_num_images - math.log(max(1.0, float(self.doc_freq[ngram]))))
            vec[k][ngram] = weight
            sq_norm[k] += weight * weight
        return vec, [math.sqrt(s) for s in sq_norm]

    def references(self, refs: Sequence[Sequence[int]], counts: Sequence[Counter]) -> list[tuple]:
        """What a candidate is compared with: (tf-idf vectors, norms, length in bigrams) per reference."""
        return [(*self.tfidf(c), max(len(r) - 1, 0)) for r, c in zip(refs, counts)]

    def score(self, c_counts: Counter, c_words: int, refs: list[tuple]) -> float:
        c_vec, c_norm = self.tfidf(c_counts)
        c_len = max(c_words - 1, 0)  # length = number of bigrams, as in pycocoevalcap
        per_order = [0.0] * self.n  # summed over references
        for r_vec, r_norm, r_len in refs:
            penalty = math.exp(-(float(c_len - r_len) ** 2) / self.two_sigma_sq)
            for k in range(self.n):
                if c_norm[k] == 0.0 or r_norm[k] == 0.0:
                    continue  # the dot product is 0 too
                r_k = r_vec[k]
                # Clipped dot product: sum_w min(c_w, r_w) * r_w (only n-grams of the candidate matter).
                dot = sum(min(c_w, r_k[w]) * r_k[w] for w, c_w in c_vec[k].items() if w in r_k)
                per_order[k] += dot / (c_norm[k] * r_norm[k]) * penalty
        return 10.0 * (sum(per_order) / self.n) / len(refs)


class CorpusCIDErD:
    """CIDEr-D of single captions with the document frequencies of a fixed corpus (the training
    references): the reward of self-critical training, where the idf of a batch alone would be
    noise. ``scores(captions, image ids)``; each image's references are prepared once."""

    def __init__(self, references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> None:
        tokens = [[[_word_id(w) for w in r.split()] for r in refs] for refs in references]
        counts = [[_ngram_counts(r, n) for r in refs] for refs in tokens]
        self.n = n
        self._scorer = _Scorer(_doc_freq(counts), len(references), n, sigma)
        self._tokens, self._counts = tokens, counts
        self._prepared: dict[int, list[tuple]] = {}

    def scores(self, captions: Sequence[str], images: Sequence[int]) -> list[float]:
        out = []
        for caption, i in zip(captions, images):
            if i not in self._prepared:
                self._prepared[i] = self._scorer.references(self._tokens[i], self._counts[i])
            words = [_word_id(w) for w in caption.split()]
            out.append(self._scorer.score(_ngram_counts(words, self.n), len(words), self._prepared[i]))
        return out
