"""Helpers of the deployment tests (importable by name: conftest puts this folder on sys.path)."""
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY_CONFIG = HERE / "tiny_deploy.yaml"


def load_tool(name: str):
    """A script of tools/ as a module, so that its main(argv) runs in-process."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
