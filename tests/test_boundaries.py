"""Package boundaries: pure cores import no heavy or web libraries; the web process never imports torch."""

import os
import subprocess
import sys
import tempfile

import pytest

from app.settings import PROJECT_ROOT

HEAVY = ("torch", "transformers", "peft")
WEB_AND_DB = ("fastapi", "starlette", "sqlmodel", "sqlalchemy")


def imported_after(code: str) -> set[str]:
    """Top-level module names loaded by running `code` in a fresh interpreter."""
    script = code + "\nimport sys\nprint(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    with tempfile.TemporaryDirectory() as var_dir:
        env = {**os.environ, "LORAPEDIA_VAR_DIR": var_dir}
        output = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    return set(output.stdout.split())


@pytest.mark.parametrize("package", ["app.content", "app.calc"])
def test_pure_cores_import_no_torch_web_or_database(package):
    modules = imported_after(
        f"import pkgutil, importlib, {package}\n"
        f"for info in pkgutil.walk_packages({package}.__path__, '{package}.'): importlib.import_module(info.name)"
    )
    assert not modules & set(HEAVY + WEB_AND_DB), sorted(modules & set(HEAVY + WEB_AND_DB))


def test_web_process_never_imports_torch():
    modules = imported_after(
        "from fastapi.testclient import TestClient\nfrom app.main import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    for path in ('/', '/params/r', '/calculator', '/jobs', '/jobs/new', '/api/datasets'):\n"
        "        assert client.get(path).status_code == 200, path\n"
    )
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
