"""Standalone VQAScore worker around t2v_metrics; run by path with another Python:

    /path/to/python /path/to/t2v_worker.py --model clip-flant5-xxl --requests req.jsonl --out scores.jsonl

It needs only the standard library and ``t2v_metrics`` (which pins its own torch/transformers, so it
usually lives in a separate environment); it must not import tsbench.

Protocol. Requests: JSONL ``{"id": str, "image": path, "text": str}`` from ``--requests`` (``-`` =
stdin). Output (``--out``, never stdout, because t2v_metrics prints to stdout): a first line
``{"meta": {"t2v_metrics_version": ..., "model": ...}}``, then one ``{"id": str, "score": float}``
per request, flushed after every batch. ``--probe`` writes only the meta line. Exit status 3 means
t2v_metrics could not be imported or the model not built (message on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, Iterator

EXIT_UNAVAILABLE = 3


def t2v_version(module: Any) -> str:
    try:
        from importlib.metadata import version

        return version("t2v-metrics")
    except Exception:  # not installed as a distribution (e.g. a source checkout on PYTHONPATH)
        return str(getattr(module, "__version__", "unknown"))


def score_requests(score_fn: Any, requests: Iterable[dict[str, Any]], batch_size: int) -> Iterator[list[tuple[str, float]]]:
    """Yield ``[(id, score), ...]`` per batch; ``batch_forward`` returns (n, images=1, texts=1)."""
    batch: list[dict[str, Any]] = []

    def run(batch: list[dict[str, Any]]) -> list[tuple[str, float]]:
        dataset = [{"images": [r["image"]], "texts": [r["text"]]} for r in batch]
        scores = score_fn.batch_forward(dataset=dataset, batch_size=batch_size)
        return [(str(r["id"]), float(scores[i][0][0])) for i, r in enumerate(batch)]

    for request in requests:
        batch.append(request)
        if len(batch) == batch_size:
            yield run(batch)
            batch = []
    if batch:
        yield run(batch)


def _read_requests(path: str) -> Iterator[dict[str, Any]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        for n, line in enumerate(stream, start=1):
            if line.strip():
                request = json.loads(line)
                missing = {"id", "image", "text"} - set(request)
                if missing:
                    raise SystemExit(f"request line {n} lacks {sorted(missing)}")
                yield request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clip-flant5-xxl")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--requests", default="-")
    parser.add_argument("--out", required=True)
    parser.add_argument("--probe", action="store_true", help="only check that t2v_metrics imports")
    args = parser.parse_args(argv)
    try:
        import t2v_metrics
    except Exception as e:  # t2v_metrics 3.0 raises RuntimeError at import when ffmpeg is missing
        print(f"cannot import t2v_metrics in {sys.executable}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    meta = {"t2v_metrics_version": t2v_version(t2v_metrics), "model": args.model, "python": sys.executable}
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(json.dumps({"meta": meta}) + "\n")
        out.flush()
        if args.probe:
            return 0
        kwargs = {"cache_dir": args.cache_dir} if args.cache_dir else {}
        try:
            score_fn = t2v_metrics.VQAScore(model=args.model, device=args.device, **kwargs)
        except Exception as e:
            print(f"cannot build t2v_metrics.VQAScore(model={args.model!r}): {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        for scored in score_requests(score_fn, _read_requests(args.requests), args.batch_size):
            out.writelines(json.dumps({"id": i, "score": s}) + "\n" for i, s in scored)
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
