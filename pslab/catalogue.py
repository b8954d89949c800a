"""Known models' parameter tensors and forward FLOPs, generated from their architectures.

Per-tensor counts matter because Layered SGD and CSGD run one blocking
collective per tensor (161 for ResNet-50) and layer-wise overlap needs bucket
boundaries. FLOPs and activation sizes feed ``compute_time: auto`` and the GPU
memory check (pslab/compute.py): a CNN's are summed layer by layer from its
shapes (a convolution costs cin·cout·k²·H_out·W_out multiply-adds); a
transformer's follow Kaplan et al. 2020 (2·N non-embedding parameters plus
2·layers·seq·d attention FLOPs per token, forward). No measured time is
catalogued: a device's time is FLOPs over its catalogued peak (pslab/hardware.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pslab.workload import ModelSpec, TransformerModel, TransformerShape, Workload


@dataclass
class Arch:
    """A model's tensors (parameter counts, in order), forward FLOPs and stored activations,
    both per sample (activations in elements: what backward keeps)."""

    tensors: list[int] = field(default_factory=list)
    forward_flops: float = 0.0
    activations: float = 0.0

    def conv(self, cin: int, cout: int, k: int, hw_out: int, bias: bool = False) -> None:
        self.tensors += [cin * cout * k * k] + ([cout] if bias else [])
        self.forward_flops += 2.0 * cin * cout * k * k * hw_out * hw_out
        self.activations += cout * hw_out * hw_out

    def bn(self, c: int, hw: int) -> None:
        self.tensors += [c, c]
        self.activations += c * hw * hw

    def linear(self, fin: int, fout: int) -> None:
        self.tensors += [fin * fout, fout]
        self.forward_flops += 2.0 * fin * fout
        self.activations += fout


def resnet50_arch(num_classes: int = 1000) -> Arch:
    """torchvision's ResNet-50 at 224²: 161 tensors, 25,557,032 parameters, 4.1 GMAC forward."""
    a = Arch()
    a.conv(3, 64, 7, 112)
    a.bn(64, 112)
    cin, hw = 64, 56  # after the stride-2 max pool
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            out = width * 4
            hw_in, hw = hw, (hw // stride if b == 0 else hw)
            a.conv(cin, width, 1, hw_in)
            a.bn(width, hw_in)
            a.conv(width, width, 3, hw)  # torchvision v1.5: the stride is on the 3x3
            a.bn(width, hw)
            a.conv(width, out, 1, hw)
            a.bn(out, hw)
            if b == 0:
                a.conv(cin, out, 1, hw)
                a.bn(out, hw)
            cin = out
    a.linear(2048, num_classes)
    return a


def resnet20_arch(num_classes: int = 10) -> Arch:
    """The CIFAR ResNet-20 (He et al.) at 32², option-A shortcuts: 59 tensors, 269,722 params."""
    a = Arch()
    a.conv(3, 16, 3, 32)
    a.bn(16, 32)
    cin, hw = 16, 32
    for width in (16, 32, 64):
        hw = 32 * 16 // width
        for _ in range(3):
            a.conv(cin, width, 3, hw)
            a.bn(width, hw)
            a.conv(width, width, 3, hw)
            a.bn(width, hw)
            cin = width
    a.linear(64, num_classes)
    return a


def vgg16_arch(num_classes: int = 1000) -> Arch:
    """torchvision's VGG-16 (no BN) at 224²: 32 tensors, 138,357,544 parameters."""
    a = Arch()
    cin, hw = 3, 224
    for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for c in block:
            a.conv(cin, c, 3, hw, bias=True)
            cin = c
        hw //= 2
    for fin, fout in ((512 * 7 * 7, 4096), (4096, 4096), (4096, num_classes)):
        a.linear(fin, fout)
    return a


def transformer_arch(shape: TransformerShape, type_vocab: int = 0) -> Arch:
    """A pre-LN transformer: embeddings (token, position), then per layer QKV, output
    projection, two LayerNorms and the FFN; FLOPs per sample of ``shape.seq`` tokens."""
    d, ffn, seq = shape.hidden, shape.ffn or 4 * shape.hidden, shape.seq
    emb = [shape.vocab * d, seq * d] + ([type_vocab * d] if type_vocab else [])
    t = [*emb, d, d]
    for _ in range(shape.layers):
        t += [d * 3 * d, 3 * d, d * d, d, d, d, d * ffn, ffn, ffn * d, d, d, d]
    non_embedding = sum(t) - sum(emb)
    per_token = 2.0 * non_embedding + 2.0 * shape.layers * seq * d
    heads = shape.heads or max(d // 64, 1)
    # Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) bytes per layer in 16-bit, i.e.
    # half that in elements of 2 bytes.
    acts = shape.layers * seq * d * (34 + 5 * heads * seq / d) / 2
    return Arch(t, per_token * seq, acts)


def bert_base_arch() -> Arch:
    """BERT-base encoder with pooler: 12 layers, d=768, 109,482,240 parameters, seq 512."""
    a = transformer_arch(TransformerShape(layers=12, hidden=768, vocab=30522, seq=512), 2)
    a.linear(768, 768)
    return a


def gpt2_small_arch() -> Arch:
    """GPT-2 small (tied embeddings, final LayerNorm): 12 layers, d=768, 124,439,808 params."""
    return transformer_arch(TransformerShape(layers=12, hidden=768, vocab=50257, seq=1024))


def digits_mlp_arch() -> Arch:
    """The emulator's digits MLP: 64 → 64 → 10 (ReLU), 4,810 parameters."""
    a = Arch()
    a.linear(64, 64)
    a.linear(64, 10)
    return a


def digits_cnn_arch() -> Arch:
    """The emulator's digits CNN: conv 1→8 3x3, conv 8→16 3x3 (8x8, padded), fc 16·8·8→10."""
    a = Arch()
    a.conv(1, 8, 3, 8, bias=True)
    a.conv(8, 16, 3, 8, bias=True)
    a.linear(16 * 8 * 8, 10)
    return a


ARCHS: dict[str, Callable[[], Arch]] = {
    "resnet50": resnet50_arch,
    "resnet20": resnet20_arch,
    "vgg16": vgg16_arch,
    "bert_base": bert_base_arch,
    "gpt2_small": gpt2_small_arch,
    "digits_mlp": digits_mlp_arch,
    "digits_cnn": digits_cnn_arch,
}

CATALOGUE: dict[str, Callable[[], list[int]]] = {
    name: (lambda f=f: f().tensors) for name, f in ARCHS.items()
}
"""Per-tensor parameter counts by catalogue name (what the emulator's models must match)."""


def model_arch(workload: Workload) -> Arch | None:
    """The workload's architecture where it is known (catalogue name or transformer family);
    None for a bare spec, whose FLOPs come from ``flops_per_sample`` if given."""
    m = workload.model
    if isinstance(m, str):
        return ARCHS[m]()
    if isinstance(m, TransformerModel):
        return transformer_arch(m.transformer)
    return None


def resolve_model(workload: Workload) -> ModelSpec:
    """The workload's model as an explicit spec with per-tensor sizes."""
    m = workload.model
    if isinstance(m, ModelSpec):
        return m if m.layers else m.model_copy(update={"layers": [m.params]})
    if isinstance(m, TransformerModel):
        layers = transformer_arch(m.transformer).tensors
        return ModelSpec(params=sum(layers), layers=layers, dtype=m.dtype)
    if m not in CATALOGUE:
        raise KeyError(f"unknown model {m!r}; known: {', '.join(sorted(CATALOGUE))}")
    layers = CATALOGUE[m]()
    return ModelSpec(params=sum(layers), layers=layers)
