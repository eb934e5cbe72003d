from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def messy() -> Path:
    return FIXTURES / "messy"


@pytest.fixture
def home(tmp_path):
    from pipelines.datahome import DataHome

    return DataHome(tmp_path / "data")
