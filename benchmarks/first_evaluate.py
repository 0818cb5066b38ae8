"""First and repeated `evaluate()` / `predict()` of the canned Adult DNN in a fresh process.

Trains `DNNClassifier([100, 75, 50, 25])` for 20 steps on the Adult training rows, then times
three `evaluate()` calls and two batched `predict()` calls over the 16,281 test rows (batch 256).
The first call of each includes compiling its step (the persistent compilation cache is turned
off here so the figure is a cold one); the later ones are the steady cost. Prints JSON.

  python -m benchmarks.first_evaluate

Targets (issue 10, 2-core CPU): first evaluate <= 1.0 s, repeated <= 30 ms (TF Estimator 2.15:
2.4 s).
"""
from __future__ import annotations

import json
import tempfile
import time

import numpy as np

import jestimator as je
from benchmarks.workloads import adult as adult_workload
from jestimator.datasets import adult


def _split(rows: dict) -> tuple[dict, np.ndarray]:
  labels = (rows['income_bracket'] == '>50K').astype(np.int64)
  return {k: v for k, v in rows.items() if k != 'income_bracket'}, labels


def main() -> dict:
  train, test = adult.load()
  _, deep = adult_workload.feature_columns(train)
  train_x, train_y = _split(train)
  test_x, test_y = _split(test)
  est = je.DNNClassifier([100, 75, 50, 25], deep, model_dir=tempfile.mkdtemp(),
                         config=je.RunConfig(compilation_cache=False,
                                             log_step_count_steps=100_000))
  est.train(je.inputs.numpy_input_fn(train_x, train_y, batch_size=256, shuffle=True), steps=20)
  eval_fn = je.inputs.numpy_input_fn(test_x, test_y, batch_size=256, shuffle=False)
  evaluate_s = []
  for _ in range(3):
    start = time.perf_counter()
    est.evaluate(eval_fn)
    evaluate_s.append(time.perf_counter() - start)
  predict_fn = je.inputs.numpy_input_fn(test_x, batch_size=256, shuffle=False)
  predict_s = []
  for _ in range(2):
    start = time.perf_counter()
    rows = sum(len(p['logits']) for p in est.predict(predict_fn, yield_single_examples=False))
    predict_s.append(time.perf_counter() - start)
  result = {'evaluate_s': [round(t, 3) for t in evaluate_s],
            'predict_s': [round(t, 3) for t in predict_s],
            'predict_examples_per_s': round(rows / predict_s[-1]), 'rows': int(rows)}
  print(json.dumps(result))
  return result


if __name__ == '__main__':
  main()
