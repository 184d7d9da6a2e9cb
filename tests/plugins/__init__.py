"""pytest plugins with the fixtures the test suite shares (registered in conftest.py)."""
