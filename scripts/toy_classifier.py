"""Trains (or loads) the toy_shapes classifier of `adapt_tf.evaluation.toy_metric` and prints what
the real
data scores with it: training time, test accuracy, the toy FID floor (test vs train split) and
the test split's confident share and class coverage.

    python scripts/toy_classifier.py            # the cached classifier (trained if missing)
    python scripts/toy_classifier.py --fresh    # train anew in a temporary cache (timing)
"""
from __future__ import annotations

import argparse
import json
import tempfile

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf.evaluation import toy_metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache_dir", default=None, help="default $ADAPT_TF_CACHE_DIR/"
                        "toy_classifier, else ~/.cache/adapt_tf/toy_classifier")
    parser.add_argument("--fresh", action="store_true",
                        help="train into a temporary cache dir that is deleted afterwards")
    args = parser.parse_args()
    if args.fresh:
        with tempfile.TemporaryDirectory() as cache_dir:
            _, reference = toy_metric.load_classifier(cache_dir=cache_dir)
    else:
        _, reference = toy_metric.load_classifier(cache_dir=args.cache_dir)
    print(json.dumps(reference.summary(), indent=2))


if __name__ == "__main__":
    main()
