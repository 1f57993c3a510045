"""The adapter a job saves is the adapter it trained: reloaded logits and LoRA tensors equal the trained model's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from app.settings import Settings
from app.training.loading import build_random_model
from app.training.run import run_training
from tests.training.conftest import Recorder, job_spec, tiny_spec

STEPS = 12
SEED = 7  # tiny_spec's seed: the job builds its base weights from it, and so does the reload below


class FinalStateProbe:
    """Watches a job from outside: remembers the causal LM that runs forward and copies it at the last step's metric.

    The copy is taken in on_metric, after the last optimizer step and before anything the trainer does to save.
    """

    def __init__(self, input_ids: torch.Tensor, total_steps: int):
        self.input_ids, self.total_steps = input_ids, total_steps
        self.model: torch.nn.Module | None = None
        self.lora: dict[str, torch.Tensor] = {}
        self.logits: torch.Tensor | None = None

    def remember(self, module: torch.nn.Module, args, output) -> None:
        if type(module).__name__.endswith("ForCausalLM"):
            self.model = module

    def on_metric(self, forward: Callable[[dict], None]) -> Callable[[dict], None]:
        def report(metric: dict) -> None:
            forward(metric)
            if metric["step"] == self.total_steps:
                assert self.model is not None, "no causal LM ran forward during the job"
                self.lora = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items() if "lora_" in name}
                with torch.no_grad():
                    self.logits = self.model(input_ids=self.input_ids, use_cache=False).logits.clone()
        return report


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[FinalStateProbe, Path, Settings]:
    """A real tiny-llama job, its final in-memory state and the adapter directory it saved."""
    # fp32 throughout, so the reloaded adapter on an fp32 base must reproduce the trained logits to 1e-5
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), cpu_precision="fp32")
    probe = FinalStateProbe(torch.randint(3, 512, (3, 24), generator=torch.Generator().manual_seed(1)), STEPS)
    recorder = Recorder()
    handle = torch.nn.modules.module.register_module_forward_hook(probe.remember)
    try:
        result = run_training(job_spec(tiny_spec(max_steps=STEPS, eval_steps=None)), settings, tmp_path_factory.mktemp("job"),
                              probe.on_metric(recorder.on_metric), recorder.should_stop, recorder.on_event)
    finally:
        handle.remove()
    assert result.status == "succeeded" and probe.logits is not None
    return probe, Path(result.adapter_dir), settings


def test_the_reloaded_adapter_gives_the_trained_models_logits(trained):
    probe, adapter_dir, settings = trained
    base, _ = build_random_model(settings, SEED)
    with torch.no_grad():
        plain = base(input_ids=probe.input_ids, use_cache=False).logits
    reloaded = PeftModel.from_pretrained(build_random_model(settings, SEED)[0], adapter_dir).eval()
    with torch.no_grad():
        adapted = reloaded(input_ids=probe.input_ids, use_cache=False).logits
    # the test means something only if training moved the logits far beyond the tolerance
    assert (probe.logits - plain).abs().max() > 0.05
    torch.testing.assert_close(adapted, probe.logits, atol=1e-5, rtol=1e-5)


def test_the_saved_tensors_equal_the_trained_lora_a_and_b(trained):
    probe, adapter_dir, _ = trained
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    # the file drops peft's wrapper prefix and the adapter name: base_model.model.<module>.lora_A.weight
    as_trained = {name.removeprefix("base_model.model.").replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): tensor
                  for name, tensor in saved.items()}
    assert set(as_trained) == set(probe.lora)
    assert sum("lora_B" in name for name in probe.lora) == 14  # 2 layers x 7 linear modules (all-linear)
    for name, tensor in probe.lora.items():
        assert torch.equal(as_trained[name], tensor), name
