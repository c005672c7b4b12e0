"""Reliability and security: threads, broken model folders, hostile images and annotations."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from facealign_sdk.aligner import Aligner

from .conftest import SAMPLES


# -- one Aligner shared by threads ----------------------------------------------------------------
def _thread_images(face_image: np.ndarray) -> list[np.ndarray]:
    """Images of different sizes (the detector's input size changes between calls) and face counts."""
    two = cv2.imread(str(SAMPLES / "two_faces.jpg"))
    return [face_image, cv2.resize(face_image, (320, 240)), two, cv2.resize(two, (900, 700)),
            face_image[40:, 30:], np.full((200, 300, 3), 90, np.uint8)]


def _signature(faces) -> list:
    return [(f.box, f.score, f.points.tobytes(), f.confidence.tobytes()) for f in faces]


def test_one_aligner_from_8_threads_matches_one_thread(tiny_model, face_image):
    aligner = Aligner(tiny_model, backend="torch")
    images = _thread_images(face_image)
    expected = [_signature(aligner.align(im)) for im in images]
    assert sum(len(e) for e in expected) >= 5  # the detector found the faces
    rounds = 2
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            barrier.wait()
            order = [(k + i) % len(images) for i in range(len(images) * rounds)]
            results[k] = [(i, _signature(aligner.align(images[i]))) for i in order]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for k, got in results.items():
        for i, sig in got:
            assert sig == expected[i], f"thread {k}, image {i}"


def test_a_detector_without_fork_is_called_by_one_thread_at_a_time(tiny_model, face_image):
    import time

    from facealign_sdk.detectors.base import Detection

    class NotReentrant:
        busy = False

        def detect(self, image):
            assert not self.busy, "detect() entered by two threads at once"
            self.busy = True
            time.sleep(0.002)
            self.busy = False
            return [Detection(box=(150, 100, 350, 330), score=0.9)]

    aligner = Aligner(tiny_model, backend="torch", detector=NotReentrant())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                aligner.detect(face_image)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
