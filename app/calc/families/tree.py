"""TreeBuilder: collects modules in `named_modules()` order while a family describes its model."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import CONV1D, EMBEDDING, LINEAR, OTHER, Architecture, Module, Param, split_layer
from app.calc.families.config_fields import DecoderSizes

ACTIVATION_CLASSES = {
    "silu": "SiLUActivation",
    "swish": "SiLUActivation",
    "gelu": "GELUActivation",
    "gelu_new": "NewGELUActivation",
    "gelu_pytorch_tanh": "GELUTanh",
    "relu": "ReLU",
}


class TreeBuilder:
    """Appends modules with their own parameters; names and shapes follow transformers exactly."""

    def __init__(self) -> None:
        self.modules: list[Module] = []

    def add(self, name: str, cls: str, params: tuple[Param, ...] = ()) -> None:
        """A module that peft cannot wrap (container, norm, activation, router...)."""
        self._append(Module(name=name, cls=cls, kind=OTHER, params=params))

    def linear(self, name: str, in_features: int, out_features: int, *, bias: bool, tied_to: str | None = None) -> None:
        """An nn.Linear: weight (out, in), optional bias (out,)."""
        params = (Param("weight", (out_features, in_features), tied_to),)
        if bias:
            params += (Param("bias", (out_features,)),)
        self._append(Module(name, "Linear", LINEAR, in_features, out_features, params))

    def conv1d(self, name: str, in_features: int, out_features: int) -> None:
        """transformers' Conv1D (GPT-2): weight stored (in, out), bias (out,)."""
        params = (Param("weight", (in_features, out_features)), Param("bias", (out_features,)))
        self._append(Module(name, "Conv1D", CONV1D, in_features, out_features, params))

    def embedding(self, name: str, num_embeddings: int, dim: int, cls: str = "Embedding") -> None:
        """An nn.Embedding (or subclass): weight (num, dim); peft sees in=num, out=dim."""
        self._append(Module(name, cls, EMBEDDING, num_embeddings, dim, (Param("weight", (num_embeddings, dim)),)))

    def norm(self, name: str, cls: str, size: int, *, bias: bool = False) -> None:
        """A normalisation layer with a weight (and bias for LayerNorm)."""
        params = (Param("weight", (size,)),)
        if bias:
            params += (Param("bias", (size,)),)
        self.add(name, cls, params)

    def decoder_start(self, prefix: str, sizes: DecoderSizes, embedding_cls: str = "Embedding") -> None:
        """The head of a decoder-only tree: <prefix>Model, model.embed_tokens and the model.layers container."""
        self.add("model", f"{prefix}Model")
        self.embedding("model.embed_tokens", sizes.vocab, sizes.hidden, embedding_cls)
        self.add("model.layers", "ModuleList")

    def attention(self, base: str, cls: str, sizes: DecoderSizes, *, qkv_bias: bool = False, o_bias: bool = False) -> None:
        """<base>.self_attn with separate q_proj, k_proj, v_proj (grouped-query: kv_heads) and o_proj."""
        self.add(f"{base}.self_attn", cls)
        query_width, kv_width = sizes.heads * sizes.head_dim, sizes.kv_heads * sizes.head_dim
        self.linear(f"{base}.self_attn.q_proj", sizes.hidden, query_width, bias=qkv_bias)
        self.linear(f"{base}.self_attn.k_proj", sizes.hidden, kv_width, bias=qkv_bias)
        self.linear(f"{base}.self_attn.v_proj", sizes.hidden, kv_width, bias=qkv_bias)
        self.linear(f"{base}.self_attn.o_proj", query_width, sizes.hidden, bias=o_bias)

    def decoder_end(self, prefix: str, sizes: DecoderSizes) -> None:
        """The tail of a decoder-only tree: the final RMSNorm, the rotary embedding and lm_head (tied if configured)."""
        self.norm("model.norm", f"{prefix}RMSNorm", sizes.hidden)
        self.add("model.rotary_emb", f"{prefix}RotaryEmbedding")
        self.linear("lm_head", sizes.hidden, sizes.vocab, bias=False, tied_to="model.embed_tokens.weight" if sizes.tie else None)

    def _append(self, module: Module) -> None:
        layer, template = split_layer(module.name)
        self.modules.append(
            Module(
                module.name, module.cls, module.kind, module.in_features, module.out_features,
                module.params, layer, template,
            )
        )

    def build(self) -> tuple[Module, ...]:
        """The modules collected so far."""
        return tuple(self.modules)

    def architecture(
        self, model_type: str, family: str, sizes: DecoderSizes, *, input_embedding: str = "model.embed_tokens",
        **extra: Any,
    ) -> Architecture:
        """The finished Architecture: the modules collected, the output layer lm_head, and `sizes`."""
        return Architecture(
            model_type=model_type,
            family=family,
            modules=self.build(),
            output_layer="lm_head",
            input_embedding=input_embedding,
            num_layers=sizes.layers,
            hidden_size=sizes.hidden,
            intermediate_size=sizes.intermediate,
            num_attention_heads=sizes.heads,
            num_key_value_heads=sizes.kv_heads,
            head_dim=sizes.head_dim,
            vocab_size=sizes.vocab,
            tie_word_embeddings=sizes.tie,
            **extra,
        )


def activation_class(hidden_act: object) -> str:
    """The activation module's class name for a `hidden_act` string."""
    return ACTIVATION_CLASSES.get(str(hidden_act), "Activation")
