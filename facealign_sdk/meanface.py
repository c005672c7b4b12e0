"""The generic 3-D face of the head pose (:mod:`facealign_sdk.headpose`) and the 68-point crop template
(:mod:`facealign_sdk.facecrop`): the 68 iBUG points of a mean adult face, in millimetres.

Our own, derived by ``benchmarks/derive_mean_face.py`` from the 2-D points of the 1000 AFLW2000-3D
faces in ``../shared/data/aflw2000/train`` (yaw up to +-90 degrees), without any 3-D data: rigid
structure from motion under weak perspective (Tomasi-Kanade factorisation made metric, refined by
alternating least squares over each face's pose and the shape), then rotated into the head frame,
averaged with its mirror image and scaled so that the outer eye corners (36, 45) are 90 mm apart, about
the adult biocular width (ex-ex) of anthropometric tables. ``tests/test_headpose.py`` re-derives it
when the data set is present and checks it against this table.

Frame: x to the image right, y down, z away from the camera for a face looking at it; origin at the
nose tip (point 30); mirror-symmetric about x = 0 (iBUG mirror order). Rounded to 0.1 mm.
"""

from __future__ import annotations

import numpy as np

MEAN_FACE_68 = np.array([
    ( -73.4,  -50.7,  122.0),  # 0
    ( -71.6,  -30.3,  121.8),  # 1
    ( -67.6,  -11.4,  122.6),  # 2
    ( -63.6,    6.1,  121.6),  # 3
    ( -58.0,   26.1,  115.3),  # 4
    ( -48.4,   43.7,  101.0),  # 5
    ( -37.0,   57.1,   81.8),  # 6
    ( -21.9,   69.0,   63.4),  # 7
    (   0.0,   75.9,   55.8),  # 8
    (  21.9,   69.0,   63.4),  # 9
    (  37.0,   57.1,   81.8),  # 10
    (  48.4,   43.7,  101.0),  # 11
    (  58.0,   26.1,  115.3),  # 12
    (  63.6,    6.1,  121.6),  # 13
    (  67.6,  -11.4,  122.6),  # 14
    (  71.6,  -30.3,  121.8),  # 15
    (  73.4,  -50.7,  122.0),  # 16
    ( -58.5,  -61.7,   50.8),  # 17
    ( -49.9,  -66.8,   37.1),  # 18
    ( -38.9,  -67.5,   28.1),  # 19
    ( -28.6,  -65.6,   22.6),  # 20
    ( -19.5,  -62.2,   20.3),  # 21
    (  19.5,  -62.2,   20.3),  # 22
    (  28.6,  -65.6,   22.6),  # 23
    (  38.9,  -67.5,   28.1),  # 24
    (  49.9,  -66.8,   37.1),  # 25
    (  58.5,  -61.7,   50.8),  # 26
    (   0.0,  -39.5,   19.0),  # 27
    (   0.0,  -24.8,   10.6),  # 28
    (   0.0,  -11.3,    1.3),  # 29
    (   0.0,    0.0,    0.0),  # 30
    ( -12.2,    5.5,   25.6),  # 31
    (  -6.8,    7.1,   21.0),  # 32
    (   0.0,    8.8,   19.0),  # 33
    (   6.8,    7.1,   21.0),  # 34
    (  12.2,    5.5,   25.6),  # 35
    ( -45.0,  -44.7,   44.0),  # 36
    ( -38.0,  -47.8,   35.2),  # 37
    ( -28.6,  -47.7,   34.8),  # 38
    ( -19.8,  -42.6,   37.8),  # 39
    ( -27.9,  -40.1,   35.8),  # 40
    ( -37.9,  -40.5,   38.2),  # 41
    (  19.8,  -42.6,   37.8),  # 42
    (  28.6,  -47.7,   34.8),  # 43
    (  38.0,  -47.8,   35.2),  # 44
    (  45.0,  -44.7,   44.0),  # 45
    (  37.9,  -40.5,   38.2),  # 46
    (  27.9,  -40.1,   35.8),  # 47
    ( -27.1,   28.2,   44.0),  # 48
    ( -17.8,   24.2,   28.8),  # 49
    (  -6.0,   21.2,   21.0),  # 50
    (   0.0,   22.4,   20.4),  # 51
    (   6.0,   21.2,   21.0),  # 52
    (  17.8,   24.2,   28.8),  # 53
    (  27.1,   28.2,   44.0),  # 54
    (  17.4,   37.6,   34.3),  # 55
    (   9.0,   42.3,   29.7),  # 56
    (   0.0,   43.3,   28.6),  # 57
    (  -9.0,   42.3,   29.7),  # 58
    ( -17.4,   37.6,   34.3),  # 59
    ( -25.3,   28.0,   43.4),  # 60
    (  -8.1,   27.4,   27.5),  # 61
    (   0.0,   27.4,   25.4),  # 62
    (   8.1,   27.4,   27.5),  # 63
    (  25.3,   28.0,   43.4),  # 64
    (   8.2,   33.4,   29.7),  # 65
    (   0.0,   34.3,   28.5),  # 66
    (  -8.2,   33.4,   29.7),  # 67
], dtype=np.float64)
MEAN_FACE_68.setflags(write=False)
