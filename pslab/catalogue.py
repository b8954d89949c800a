"""Known models' parameter tensors, generated from their architectures.

Only shapes are catalogued: per-tensor counts matter because Layered SGD and
CSGD run one blocking collective per tensor (161 for ResNet-50) and
layer-wise overlap needs bucket boundaries. Compute times are *not*
catalogued: we have no measurement to cite, so a scenario gives them or a
calibration profile measures them.
"""

from __future__ import annotations

from collections.abc import Callable

from pslab.scenario import ModelSpec, Workload


def _conv(cin: int, cout: int, k: int, bias: bool = False) -> list[int]:
    return [cin * cout * k * k] + ([cout] if bias else [])


def _bn(c: int) -> list[int]:
    return [c, c]


def resnet50(num_classes: int = 1000) -> list[int]:
    """torchvision's ResNet-50: 161 tensors, 25,557,032 parameters."""
    t = _conv(3, 64, 7) + _bn(64)
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            out = width * 4
            t += _conv(cin, width, 1) + _bn(width)
            t += _conv(width, width, 3) + _bn(width)
            t += _conv(width, out, 1) + _bn(out)
            if b == 0:
                t += _conv(cin, out, 1) + _bn(out)
            cin = out
    return [*t, 2048 * num_classes, num_classes]


def resnet20(num_classes: int = 10) -> list[int]:
    """The CIFAR ResNet-20 (He et al.), option-A shortcuts: 59 tensors, 269,722 parameters."""
    t = _conv(3, 16, 3) + _bn(16)
    cin = 16
    for width in (16, 32, 64):
        for _ in range(3):
            t += _conv(cin, width, 3) + _bn(width) + _conv(width, width, 3) + _bn(width)
            cin = width
    return [*t, 64 * num_classes, num_classes]


def vgg16(num_classes: int = 1000) -> list[int]:
    """torchvision's VGG-16 (no BN): 32 tensors, 138,357,544 parameters."""
    cfg = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    t: list[int] = []
    cin = 3
    for c in cfg:
        t += _conv(cin, c, 3, bias=True)
        cin = c
    for fin, fout in ((512 * 7 * 7, 4096), (4096, 4096), (4096, num_classes)):
        t += [fin * fout, fout]
    return t


def _transformer(
    layers: int, d: int, vocab: int, ctx: int, ffn: int, type_vocab: int = 0
) -> list[int]:
    t = [vocab * d, ctx * d] + ([type_vocab * d] if type_vocab else []) + [d, d]
    for _ in range(layers):
        t += [d * 3 * d, 3 * d, d * d, d, d, d, d * ffn, ffn, ffn * d, d, d, d]
    return t


def bert_base() -> list[int]:
    """BERT-base encoder with pooler: 12 layers, d=768, 109,482,240 parameters."""
    return [*_transformer(12, 768, 30522, 512, 3072, type_vocab=2), 768 * 768, 768]


def gpt2_small() -> list[int]:
    """GPT-2 small (tied embeddings, final LayerNorm): 12 layers, d=768, 124,439,808 parameters."""
    return _transformer(12, 768, 50257, 1024, 3072)


def digits_mlp() -> list[int]:
    """The emulator's digits MLP: 64 → 64 → 10 (ReLU), 4,810 parameters."""
    return [64 * 64, 64, 64 * 10, 10]


def digits_cnn() -> list[int]:
    """The emulator's digits CNN: conv 1→8 3x3, conv 8→16 3x3, fc 16·8·8→10."""
    return [8 * 1 * 9, 8, 16 * 8 * 9, 16, 16 * 8 * 8 * 10, 10]


CATALOGUE: dict[str, Callable[[], list[int]]] = {
    "resnet50": resnet50,
    "resnet20": resnet20,
    "vgg16": vgg16,
    "bert_base": bert_base,
    "gpt2_small": gpt2_small,
    "digits_mlp": digits_mlp,
    "digits_cnn": digits_cnn,
}


def resolve_model(workload: Workload) -> ModelSpec:
    """The workload's model as an explicit spec with per-tensor sizes."""
    m = workload.model
    if isinstance(m, ModelSpec):
        return m if m.layers else m.model_copy(update={"layers": [m.params]})
    if m not in CATALOGUE:
        raise KeyError(f"unknown model {m!r}; known: {', '.join(sorted(CATALOGUE))}")
    layers = CATALOGUE[m]()
    return ModelSpec(params=sum(layers), layers=layers)
