"""Shared test helpers: where the real test data lives (`../shared/data`, beside the checkout,
as CI lays it out) and a skip marker for tests that need it."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def requires_shared(*relative: str):
    """Skip unless every `SHARED_DATA / relative` path exists, naming the first missing one."""
    missing = [SHARED_DATA / r for r in relative if not (SHARED_DATA / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real test data not found: {missing[0] if missing else ''} "
                                                    f"(CI puts shared/ beside the clone)")
