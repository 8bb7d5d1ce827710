"""The seven degradations in numpy/OpenCV, as a Python pipeline would write them (the
reference's own operations where it has them), timed on the bundled images with one worker
process per core. Prints `task images/s` lines like mio's synthesis_bench."""
import os
import pathlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

cv2.setNumThreads(1)  # parallelism comes from the worker processes, as in a data loader
ROOT = pathlib.Path(__file__).resolve().parent.parent / "data"
TASKS = ["sr", "blur", "noise", "jpeg", "rain", "haze", "lowlight"]


def sr(img, rng):
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def blur(img, rng):
    k = int(rng.choice(np.arange(7, 22, 2)))
    return cv2.GaussianBlur(img, (k, k), rng.uniform(1, 3), borderType=cv2.BORDER_REFLECT_101)


def noise(img, rng):
    sigma = round(rng.uniform(15, 50)) / 255.0
    out = img.astype(np.float32) / 255.0 + rng.normal(0, sigma, img.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def jpeg(img, rng):
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(round(rng.uniform(30, 70)))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def rain(img, rng):
    # The reference's streak synthesis (seeds, rotated line kernel, blur, min-max, add).
    value = rng.integers(50, 101)
    n = rng.uniform(0, 256, img.shape[:2])
    n[n < 256 - value * 0.01] = 0
    n = cv2.filter2D(n, -1, np.array([[0, 0.1, 0], [0.1, 8, 0.1], [0, 0.1, 0]]))
    length, angle, w = int(rng.integers(20, 41)), rng.uniform(-45, 45), int(rng.choice([3, 5, 7, 9, 11]))
    m = cv2.getRotationMatrix2D((length / 2, length / 2), angle - 45, 1 - length / 100.0)
    k = cv2.warpAffine(np.diag(np.ones(length)), m, (length, length))
    k = cv2.GaussianBlur(k, (w, w), 0)
    streaks = cv2.filter2D(n, -1, k)
    cv2.normalize(streaks, streaks, 0, 255, cv2.NORM_MINMAX)
    out = img.astype(np.float32) + streaks.astype(np.uint8)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def haze(img, rng):
    h, w = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    relief = sum(np.cos(2 * np.pi * (rng.uniform(0, 2) / w * x + rng.uniform(0, 2) / h * y) + rng.uniform(0, 2 * np.pi))
                 for _ in range(4)) / 4
    d = 0.75 * (1 - y / (h - 1)) + 0.25 * (relief * 0.5 + 0.5)
    d = (d - d.min()) / (d.max() - d.min())
    t = np.exp(-rng.uniform(0.5, 2.5) * d)[..., None]
    out = img / 255.0 * t + rng.uniform(0.8, 1.0) * (1 - t)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def lowlight(img, rng):
    return (np.power(img / 255.0, rng.uniform(1, 3)) * 255).round().astype(np.uint8)


FUNCS = dict(sr=sr, blur=blur, noise=noise, jpeg=jpeg, rain=rain, haze=haze, lowlight=lowlight)
IMAGES = None


def init():
    global IMAGES
    files = sorted((ROOT / "train").glob("*.png")) + sorted((ROOT / "test").glob("*.png"))
    IMAGES = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]


def work(args):
    task, i, seed = args
    return FUNCS[task](IMAGES[i], np.random.default_rng(seed)).nbytes


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    workers = os.cpu_count()
    init()
    n = len(IMAGES)
    print("workers", workers)
    with ProcessPoolExecutor(workers, initializer=init) as pool:
        list(pool.map(work, [("lowlight", i, 0) for i in range(n)]))  # warm the workers up
        total = 0.0
        for task in TASKS:
            start = time.perf_counter()
            list(pool.map(work, [(task, i, r * n + i) for r in range(rounds) for i in range(n)], chunksize=1))
            secs = time.perf_counter() - start
            total += secs
            print(f"{task} {rounds * n / secs:.1f}")
        print(f"all {rounds * n * 7 / total:.1f}")
