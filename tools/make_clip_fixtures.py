"""Regenerates the CLIP golden checkpoints and tokenizer ids of the tests from the references.

Tiny CLIP models of open_clip (OpenAI's layout) and transformers (`CLIPModel`) get random
weights, saved in the formats `scenic_eqx.nn.load_weights` reads, with random inputs and
the references' embeddings and `logits_per_image`. A small BPE vocabulary is trained on
a few sentences and the ids of open_clip's and transformers' CLIP tokenizers saved. The
tests then need neither PyTorch nor the reference libraries.

Run it with a separate environment holding the references, never the project's. The
machine it was made on reaches PyPI only, whose torchvision wheels are CUDA builds; the
CPU torch of the project's environment is linked in instead of installing a CUDA one:

    python3 -m venv /tmp/clipref
    mkdir /tmp/clipref/torch_link
    for p in torch torchgen torch-2.13.0+cpu.dist-info; do
        ln -s /work/main/.venv/lib/python3.11/site-packages/$p /tmp/clipref/torch_link/$p
    done
    echo /tmp/clipref/torch_link > /tmp/clipref/lib/python3.11/site-packages/venv_torch.pth
    /tmp/clipref/bin/pip install numpy sympy networkx filelock fsspec jinja2 typing_extensions \\
        transformers safetensors regex ftfy tqdm huggingface_hub tokenizers pillow
    /tmp/clipref/bin/pip install --no-deps open_clip_torch timm torchvision==0.28.0
    /tmp/clipref/bin/python tools/make_clip_fixtures.py

(Made with torch 2.13.0+cpu, open_clip_torch 3.3.0, transformers 5.24.0, tokenizers
0.23.3, safetensors 0.8.0.) With a CPU torch, that torchvision cannot load its compiled
operators, and fails at import registering two of them; `_allow_torchvision_without_ops`
declares their names (nothing here calls them). With a matching torch and torchvision it
does nothing.

Written to `tests/nn/fixtures/`:

- `clip_openai.safetensors`: an open_clip `CLIP` state dict (OpenAI's key names).
- `clip_hf/`: transformers' `save_pretrained` output (`model.safetensors`,
  `config.json`), with `eos_token_id=7`, not the largest id, so that its pooling (at the
  first `eos_token_id`) differs from OpenAI's (at the largest id) on these texts.
- `clip_reference_outputs.npz`: `images` `[2, 32, 32, 3]` (channels last; the
  references get NCHW), `openai_texts`, `hf_texts` `[3, 10]` int32, and per model
  (`openai_quick_gelu`: the state dict with OpenAI's QuickGELU; `openai_gelu`: the same
  weights in an open_clip model with exact GELU; `hf`) its `_image_embedding` `[2, 8]`,
  `_text_embedding` `[3, 8]` (both unnormalised) and `_logits_per_image` `[2, 3]`.

Written to `tests/data/fixtures/clip_tokenizer/`: `vocab.json` and `merges.txt` (CLIP's
layout: the 256 byte symbols, the same with `</w>`, one entry per merge, then
`<|startoftext|>` and `<|endoftext|>`; merges trained by `tokenizers`' `BpeTrainer` on
`CORPUS`), and `expected_ids.npz`: `texts` (`TEXTS`), and the ids `[len(TEXTS), 16]` of `open_clip`
(pads with 0) and `transformers` (pads with `<|endoftext|>`). They agree but on the last
text, where open_clip, whose special tokens are named `<start_of_text>` and
`<end_of_text>`, reads a written `<|endoftext|>` as text and transformers (as OpenAI's
tokenizer) as the special token.
"""

import gzip
import json
import pathlib
import tempfile

import numpy as np
import torch

# Libraries declaring operators; kept alive, as they own the declarations.
_DECLARED: list = []


def _allow_torchvision_without_ops() -> None:
    """Declares `torchvision::nms`/`qnms` when torchvision's compiled operators are missing."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        library = torch.library.Library("torchvision", "DEF")
        for name in ("nms", "qnms"):
            library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _DECLARED.append(library)


_allow_torchvision_without_ops()

import open_clip  # noqa: E402
import transformers  # noqa: E402
from make_weight_fixtures import randomize  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "nn" / "fixtures"
TOKENIZER_OUT = ROOT / "tests" / "data" / "fixtures" / "clip_tokenizer"

IMAGE, PATCH, EMBED = 32, 8, 8
VISION = {"width": 24, "layers": 2, "heads": 3}  # Unlike the text tower's: a mix-up fails.
TEXT = {"width": 16, "layers": 2, "heads": 2, "vocab_size": 50, "context_length": 10}
HF_EOS, HF_BOS = 7, 6

CORPUS = [
    "a photo of a cat.",
    "a photo of the digit seven",
    "a handwritten seven",
    "two dogs playing in the snow",
    "the cat's toy is on the table",
    "a photo of a dog, a cat and a bird!",
    "A HANDWRITTEN DIGIT: 7",
    "photos of cats and dogs",
]
TEXTS = [
    "a photo of a cat.",
    "A Photo   of the DIGIT 7!",
    "the cat's toys aren't here",
    "zebra crossing",
    "café au lait",
    "a photo of a dog, a cat, a bird, two dogs and the snow on the table",
    "",
    "<|endoftext|> inside",
]
TOKENIZER_CONTEXT = 16


def openai_texts(generator: torch.Generator) -> torch.Tensor:
    """`[start, words..., end, 0...]` with the largest ids as start and end, as CLIP's."""
    start, end, context = TEXT["vocab_size"] - 2, TEXT["vocab_size"] - 1, TEXT["context_length"]
    rows = []
    for length in (3, 8, 5):
        words = torch.randint(1, start, (length,), generator=generator)
        rows.append(torch.cat([torch.tensor([start]), words, torch.tensor([end])]))
    return torch.stack([torch.nn.functional.pad(r, (0, context - len(r))) for r in rows])


def hf_texts(generator: torch.Generator) -> torch.Tensor:
    """Texts whose words include ids above `HF_EOS`: the largest id is not the end."""
    context = TEXT["context_length"]
    rows = []
    for length in (3, 8, 5):
        words = torch.randint(HF_EOS + 1, TEXT["vocab_size"], (length,), generator=generator)
        row = torch.cat([torch.tensor([HF_BOS]), words, torch.tensor([HF_EOS])])
        rows.append(torch.nn.functional.pad(row, (0, context - len(row)), value=HF_EOS))
    return torch.stack(rows)


def open_clip_model(quick_gelu: bool) -> torch.nn.Module:
    return open_clip.model.CLIP(
        embed_dim=EMBED,
        vision_cfg={
            "image_size": IMAGE,
            "patch_size": PATCH,
            "width": VISION["width"],
            "layers": VISION["layers"],
            "head_width": VISION["width"] // VISION["heads"],
        },
        text_cfg={key: TEXT[key] for key in ("width", "layers", "heads", "vocab_size", "context_length")},
        quick_gelu=quick_gelu,
    )


def hf_model() -> torch.nn.Module:
    config = transformers.CLIPConfig(
        projection_dim=EMBED,
        vision_config={
            "image_size": IMAGE,
            "patch_size": PATCH,
            "hidden_size": VISION["width"],
            "intermediate_size": 4 * VISION["width"],
            "num_hidden_layers": VISION["layers"],
            "num_attention_heads": VISION["heads"],
        },
        text_config={
            "vocab_size": TEXT["vocab_size"],
            "max_position_embeddings": TEXT["context_length"],
            "hidden_size": TEXT["width"],
            "intermediate_size": 4 * TEXT["width"],
            "num_hidden_layers": TEXT["layers"],
            "num_attention_heads": TEXT["heads"],
            "eos_token_id": HF_EOS,
            "bos_token_id": HF_BOS,
            "pad_token_id": 0,
        },
    )
    return transformers.CLIPModel(config)


def logits_per_image(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return logit_scale.exp() * image @ text.T


def clip_models(outputs: dict[str, np.ndarray], generator: torch.Generator) -> None:
    images = np.random.default_rng(0).normal(size=(2, IMAGE, IMAGE, 3)).astype(np.float32)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    outputs["images"] = images
    texts = {"openai": openai_texts(generator), "hf": hf_texts(generator)}
    outputs.update({f"{name}_texts": t.numpy().astype(np.int32) for name, t in texts.items()})

    model = open_clip_model(quick_gelu=True)
    randomize(model, generator)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, OUT / "clip_openai.safetensors")
    twin = open_clip_model(quick_gelu=False)
    twin.load_state_dict(state)
    twin.eval()
    for name, reference in (("openai_quick_gelu", model), ("openai_gelu", twin)):
        with torch.no_grad():
            image = reference.encode_image(pixels)
            text = reference.encode_text(texts["openai"])
            outputs[f"{name}_logits_per_image"] = logits_per_image(image, text, reference.logit_scale).numpy()
        outputs[f"{name}_image_embedding"], outputs[f"{name}_text_embedding"] = image.numpy(), text.numpy()

    model = hf_model()
    randomize(model, generator)
    model.save_pretrained(OUT / "clip_hf")
    with torch.no_grad():
        out = model(input_ids=texts["hf"], pixel_values=pixels)
        image = model.get_image_features(pixel_values=pixels)
        text = model.get_text_features(input_ids=texts["hf"])
    image, text = getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)
    outputs["hf_image_embedding"], outputs["hf_text_embedding"] = image.numpy(), text.numpy()
    outputs["hf_logits_per_image"] = out.logits_per_image.numpy()
    with torch.no_grad():  # Our formula (the tests') is the reference's.
        ours = logits_per_image(image, text, model.logit_scale)
    np.testing.assert_allclose(ours.numpy(), out.logits_per_image.numpy(), rtol=1e-5)


def tokenizer_files() -> None:
    """A CLIP-layout vocabulary from merges trained on `CORPUS`, and the references' ids."""
    trainer_tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    trainer_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    words = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(words), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trainer_tokenizer.train_from_iterator(CORPUS, trainer)
    TOKENIZER_OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        trainer_tokenizer.model.save(tmp)
        merges = pathlib.Path(tmp, "merges.txt").read_text().splitlines()
    merges = [m for m in merges if m and not m.startswith("#version")]
    (TOKENIZER_OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    # CLIP's vocabulary, as OpenAI's tokenizer builds it from the merges.
    symbols = list(open_clip.tokenizer.bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges)]
    vocab = {token: i for i, token in enumerate([*vocab, "<|startoftext|>", "<|endoftext|>"])}
    (TOKENIZER_OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    with tempfile.TemporaryDirectory() as tmp:  # open_clip reads gzipped merges, the first line skipped
        gz = pathlib.Path(tmp, "merges.txt.gz")
        with gzip.open(gz, "wt", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges))
        simple = open_clip.tokenizer.SimpleTokenizer(bpe_path=str(gz), context_length=TOKENIZER_CONTEXT)
    # open_clip names its special tokens `<start_of_text>`, `<end_of_text>`: the same ids.
    assert list(simple.encoder.values()) == list(vocab.values()), "open_clip builds another vocabulary"
    hf = transformers.CLIPTokenizer(
        vocab=str(TOKENIZER_OUT / "vocab.json"), merges=str(TOKENIZER_OUT / "merges.txt")
    )
    expected = {
        "texts": np.asarray(TEXTS),
        "open_clip": simple(TEXTS, context_length=TOKENIZER_CONTEXT).numpy().astype(np.int32),
        "transformers": np.asarray(
            hf(TEXTS, padding="max_length", truncation=True, max_length=TOKENIZER_CONTEXT)["input_ids"],
            dtype=np.int32,
        ),
    }
    np.savez(TOKENIZER_OUT / "expected_ids.npz", **expected)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, np.ndarray] = {}
    clip_models(outputs, generator)
    np.savez(OUT / "clip_reference_outputs.npz", **outputs)
    tokenizer_files()
    for root in (OUT, TOKENIZER_OUT):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "clip" in str(p.relative_to(ROOT))):
            print(f"{path.stat().st_size / 1024:8.1f} KiB  {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
