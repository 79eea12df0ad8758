"""The fault catalogue (tests/fault_catalogue.py) under pytest: one test per bad input or fault.

Each case must end GOOD: the expected exit code, a one-line 'error:' for a failure, no traceback,
no hang, no leftover temporary file, and its own check. The subprocess cases (signals, DataLoader
workers, a file-size limit) are marked slow; CI runs them all the same. The table of all cases:
``python tests/fault_catalogue.py``.
"""
import pytest
from fault_catalogue import CASES, Session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The tiny synthetic data, generated once, and the reference runs the cases copy."""
    return Session(str(tmp_path_factory.mktemp("faults")))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_fault(case, session):
    outcome = session.run(case)
    assert outcome.good, outcome.describe()
