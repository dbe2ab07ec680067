"""Helpers of the deployment tests (importable by name: conftest puts this folder on sys.path)."""
from pathlib import Path

from adn_testing import ROOT, load_tool  # noqa: F401 (re-exported for the deployment tests)

HERE = Path(__file__).resolve().parent
TINY_CONFIG = HERE / "tiny_deploy.yaml"

