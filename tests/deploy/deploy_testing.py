"""Helpers of the deployment tests (importable by name: conftest puts this folder on sys.path)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY_CONFIG = HERE / "tiny_deploy.yaml"
