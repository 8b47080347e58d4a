"""The promotion lease when two promotions write its tag at the same moment.

MLflow's sqlite store refuses the second of two simultaneous inserts of one tag with an integrity error
(HTTP 500, seen in CI when two `ocrtune promote` raced). That is losing the race, not a failure: the loser
waits and tries again. The real race is in tests/integration/test_registry.py; here the store's answer is
replayed by a small stand-in registry so the retry path runs every time.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException

from ocrtune.errors import UserError
from ocrtune.release.registry import LOCK_TAG, _Lease


class Registry:
    """Registered-model tags as the tracking server keeps them; ``refuse`` writes answer as a racing insert."""

    def __init__(self, refuse: int = 0):
        self.tags: dict[str, str] = {}
        self.refuse = refuse

    def get_registered_model(self, name):
        return SimpleNamespace(tags=dict(self.tags))

    def set_registered_model_tag(self, name, key, value):
        if self.refuse:
            self.refuse -= 1
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: registered_model_tags")
        self.tags[key] = value

    def delete_registered_model_tag(self, name, key):
        self.tags.pop(key, None)


def test_a_refused_write_is_a_lost_race_and_the_lease_is_taken_on_retry():
    reg = Registry(refuse=2)
    with _Lease(reg, "m", wait=10, settle=0.01) as lease:
        assert reg.tags[LOCK_TAG].startswith(lease.token + ":")
    assert LOCK_TAG not in reg.tags


def test_a_lease_never_won_is_one_line():
    reg = Registry(refuse=10**6)
    with pytest.raises(UserError, match="another promotion holds the lock"):
        with _Lease(reg, "m", wait=0.5, settle=0.01):
            pass
