"""The tree service: the helper process builds a pasted config once; the database answers every later ask."""

from __future__ import annotations

import time

import pytest
from sqlmodel import Session, select

from app.jobs.db import init_db, make_engine
from app.jobs.tables import ModuleTree
from app.jobs.trees import TreeHelper, TreeService
from app.spec.errors import FieldError

CONFIG = {"model_type": "olmo2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture
def engine(settings):
    engine = make_engine(settings)
    init_db(engine)
    return engine


def test_built_once_then_read_from_the_database(engine, tree_helper):
    first = TreeService(engine, tree_helper).architecture(CONFIG, None)
    assert first.family == "Olmo2ForCausalLM"
    with Session(engine) as session:
        assert len(session.exec(select(ModuleTree)).all()) == 1
    broken = TreeHelper(command=["false"])  # another web host: no helper needed, the row answers
    second = TreeService(engine, broken).architecture({**CONFIG, "_name_or_path": "me/olmo"}, None)
    assert second.base_params == first.base_params


def test_refusals_are_stored_too(engine, tree_helper):
    bad = {**CONFIG, "model_type": "olmo2", "hidden_size": [32]}
    with pytest.raises(FieldError) as caught:
        TreeService(engine, tree_helper).architecture(bad, None)
    assert caught.value.loc == ("model_config", "hidden_size")
    with pytest.raises(FieldError) as again:
        TreeService(engine, TreeHelper(command=["false"])).architecture(bad, None)
    assert again.value.message == caught.value.message


def test_a_helper_that_hangs_is_stopped_and_named():
    helper = TreeHelper(timeout=0.5, command=["python3", "-c", "import time; print('{\"ready\": true}', flush=True); time.sleep(30)"])
    started = time.monotonic()
    with pytest.raises(FieldError) as caught:
        TreeService(None, helper).architecture(CONFIG, None)
    assert "longer than" in caught.value.message and time.monotonic() - started < 5
    assert helper.process is None
