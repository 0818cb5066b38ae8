"""The three modes a `model_fn` is built for, with TensorFlow's strings."""


class ModeKeys:
  """Standard names for model modes, identical to `tf.estimator.ModeKeys`.

  * `TRAIN`: training (`'train'`).
  * `EVAL`: evaluation (`'eval'`).
  * `PREDICT`: inference (`'infer'`, not `'predict'`: TF's string).
  """

  TRAIN = 'train'
  EVAL = 'eval'
  PREDICT = 'infer'

  ALL = (TRAIN, EVAL, PREDICT)


def check_mode(mode: str) -> str:
  """Returns `mode` if it is one of `ModeKeys.ALL`, else raises a ValueError naming it."""
  if mode not in ModeKeys.ALL:
    raise ValueError(f'mode must be one of {ModeKeys.ALL}, got {mode!r}')
  return mode
