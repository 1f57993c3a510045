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


def test_the_web_process_never_imports_the_training_package_nor_sets_the_environment():
    """app.training is the worker's: the web process reads its pure modules from app.jobs and writes no env variable."""
    script = (
        "import os\nos.environ.pop('OMP_WAIT_POLICY', None)\n"
        "from fastapi.testclient import TestClient\nfrom app.main import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    for path in ('/jobs', '/jobs/new', '/api/datasets'):\n"
        "        assert client.get(path).status_code == 200, path\n"
        "    assert client.post('/api/jobs', json={'model': 'tiny-llama', 'dataset': 'addition'}).status_code == 201\n"
        "import sys\nprint(sorted(name for name in sys.modules if name == 'app.training' or name.startswith('app.training.')),"
        " os.environ.get('OMP_WAIT_POLICY'))"
    )
    with tempfile.TemporaryDirectory() as var_dir:
        env = {**os.environ, "LORAPEDIA_VAR_DIR": var_dir}
        output = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[] None"


@pytest.mark.parametrize(("operator_value", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_worker_entry_sets_omp_wait_policy_from_settings_before_torch_loads(operator_value, expected):
    # stand in for app.jobs.worker so the entry point runs without polling: it reports what torch would see
    script = (
        "import sys, types, os\n"
        "fake = types.ModuleType('app.jobs.worker')\n"
        "trainer = types.ModuleType('app.training.run')\n"
        "trainer.run_training = object()\n"
        "fake.run_worker = lambda settings, load, **options: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules, load() is trainer.run_training)\n"
        "sys.modules['app.jobs.worker'] = fake\n"
        "sys.modules['app.training.run'] = trainer\n"
        "from app.cli import main\nmain(['worker'])\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "LORAPEDIA_OMP_WAIT_POLICY")}
    if operator_value:
        env["OMP_WAIT_POLICY"] = operator_value
    output = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    assert output.stdout.split() == [expected, "False", "True"]
