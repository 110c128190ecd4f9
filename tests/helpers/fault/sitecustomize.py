"""Test-only fault injection: with RLADDER_TEST_FAULT="RANK:STEP" set and this folder on PYTHONPATH,
the training process of that rank exits with code 3 right after that step (as if it were killed).

Used by tests that need a worker or a run to die at a known point; it adds a Trainer callback, so
the training loop itself carries no fault hook.
"""

import os

_spec = os.environ.get("RLADDER_TEST_FAULT", "")
if _spec:
    import rladder.core.train as _train

    _rank, _step = map(int, _spec.split(":"))
    _init = _train.Trainer.__init__

    def _with_fault(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.callbacks.append(lambda trainer: os._exit(3) if (trainer.dist.rank, trainer.step) == (_rank, _step)
                              else None)

    _train.Trainer.__init__ = _with_fault
