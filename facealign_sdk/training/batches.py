"""The landmark stage's training batches: which faces a step draws, cut and augmented.

A step's batch depends on (seed, step) alone, so a run draws the same batches with or without worker
processes and across resumes. With ``workers`` > 0 a torch DataLoader cuts them ahead of the network in
that many processes (on a GPU machine the CPU work of augmentation is what limits the rate).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..errors import FacealignError, InputError
from .data import Annotated, LandmarkAugment, landmark_sample

PREFETCH_PER_WORKER = 4  # batches each worker keeps ready: enough to hide a slow one, bounded memory


class Batch(NamedTuple):
    """One step's samples: crops (B, S, S, 3) uint8 RGB, their points (B, L, 2) in crop pixels, and which
    training items they were cut from (B,)."""

    crops: np.ndarray
    points: np.ndarray
    picks: np.ndarray


class LandmarkBatches:
    """Draws a step's faces by their sources' sampling shares and cuts each with its source's augmentation."""

    def __init__(self, items: Sequence[Annotated], source_of: np.ndarray, sample_p: np.ndarray,
                 augs: Sequence[LandmarkAugment], crop_size: int, batch_size: int, seed: int) -> None:
        self.items, self.source_of, self.sample_p = items, source_of, sample_p
        self.augs, self.crop_size, self.batch_size, self.seed = augs, crop_size, batch_size, seed

    def draw(self, step: int) -> Batch:
        """The batch of ``step`` (steps done before it)."""
        rng = np.random.default_rng([self.seed, step])
        picks = rng.choice(len(self.items), self.batch_size, p=self.sample_p)
        samples = [self._sample(i, rng) for i in picks]
        return Batch(np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples]).astype(np.float32), picks)

    def _sample(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The augmented crop and points of item ``index``; InputError naming the face when it cannot be cut."""
        item = self.items[index]
        try:
            return landmark_sample(item, self.crop_size, rng, self.augs[self.source_of[index]])
        except InputError as exc:  # bad annotation data (points far outside any image): say which face
            raise InputError(f"training face {item.name}: {exc}") from None


class _WorkerError(NamedTuple):
    """A project error raised while cutting a batch in a worker, sent back as the batch: the training process
    raises it as it is, not inside the loader's multi-process traceback."""

    error: FacealignError


class _Steps(torch.utils.data.Dataset):
    """Steps ``first`` .. ``last - 1`` as a map-style dataset: item i is the batch of step first + i."""

    def __init__(self, batches: LandmarkBatches, first: int, last: int) -> None:
        self.batches, self.first, self.last = batches, first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, index: int) -> Batch | _WorkerError:
        try:
            return self.batches.draw(self.first + index)
        except FacealignError as exc:
            return _WorkerError(exc)


def _quiet_worker(_: int) -> None:
    """One torch thread per worker: the workers are the parallelism. (OpenCV's thread count is left alone: in
    a forked child whose parent has used OpenCV's thread pool, ``cv2.setNumThreads`` hangs.)"""
    torch.set_num_threads(1)


def _as_they_are(batch: Batch) -> Batch:
    """The loader's collate: a step's batch is already whole (the default would turn its arrays into tensors)."""
    return batch


def batch_stream(batches: LandmarkBatches, first: int, last: int, workers: int = 0) -> Iterator[Batch]:
    """The batches of steps ``first`` .. ``last - 1`` in order, cut in the calling process (``workers`` 0) or
    in ``workers`` processes ahead of it."""
    if workers == 0:
        for step in range(first, last):
            yield batches.draw(step)
        return
    # fork: the workers share the decoded images with this process instead of each receiving a pickled copy
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(
        _Steps(batches, first, last), batch_size=None, shuffle=False, num_workers=workers,
        prefetch_factor=PREFETCH_PER_WORKER, worker_init_fn=_quiet_worker, collate_fn=_as_they_are,
        multiprocessing_context=context)
    for batch in loader:
        if isinstance(batch, _WorkerError):
            raise batch.error
        yield batch
