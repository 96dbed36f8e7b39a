"""The KNN outlier score at training-set scale: 1e6 L2-normalised training features, k = 1000.

    python3 benches/bench_knn.py [--rows 1000000] [--dim 128] [--queries 64] [--k 1000]

Fits :class:`oltr.scores.KNN` with the Rust core and with FAISS (IndexFlatL2), times ``fit`` and
``predict``, checks both give the same scores and that they equal a brute-force float32 GEMM for
four queries. Prints one Markdown table row per backend.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args()
    from oltr._platform import cpu_info
    from oltr.scores import KNN

    rng = np.random.default_rng(0)
    train = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    print(f"{cpu_info().label}; load average {os.getloadavg()[0]:.2f}; N = {args.rows}, D = {args.dim}, "
          f"{args.queries} queries, k = {args.k}\n")
    print("| backend | fit | predict | engine |\n|---|---|---|---|")
    scores = {}
    for backend in ("rust", "faiss"):
        start = time.perf_counter()
        knn = KNN(k=args.k, backend=backend).fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        scores[backend] = knn.predict(queries)
        predict_s = time.perf_counter() - start
        print(f"| {backend} | {fit_s:.1f} s | {predict_s:.2f} s | {getattr(knn.index, 'kernel', None) or '-'} |")
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = queries[:4] / np.linalg.norm(queries[:4], axis=1, keepdims=True)
    brute = np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ unit.T + (unit * unit).sum(1)[None], 0))
    print(f"\nmax |rust - faiss| = {np.abs(scores['rust'] - scores['faiss']).max():.3g}; "
          f"max |rust - brute force (float32 GEMM, 4 queries)| = "
          f"{np.abs(np.sort(brute, 1)[:, args.k - 1] - scores['rust'][:4]).max():.3g}")


if __name__ == "__main__":
    main()
