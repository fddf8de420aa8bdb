"""CLIP's byte-level BPE tokenizer, from a vocabulary and merges file the user gives.

Radford et al. 2021 ("Learning Transferable Visual Models From Natural Language
Supervision", section 2.4) tokenize captions with "a lower-cased byte pair encoding
(BPE) representation of the text", bracketed by `<|startoftext|>` and `<|endoftext|>`.
This builds that tokenizer on Hugging Face's `tokenizers` library (the `[text]` extra),
with the conventions of transformers' `CLIPTokenizer`: NFC, runs of whitespace made one
space, lower case; words split by CLIP's pattern (letters, single digits, punctuation
runs, English contractions); each word's bytes mapped to printable characters (GPT-2's
byte-level alphabet) and merged by the merges file's ranks, the last symbol of a word
carrying the suffix `</w>`. OpenAI's own tokenizer also runs `ftfy.fix_text` and
`html.unescape` first; the ids differ only on text those change (mojibake, curly quotes,
HTML entities).

Host-side and numpy only: nothing here imports JAX or TensorFlow.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._extras import require

START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"
# CLIP's word pattern (OpenAI's `simple_tokenizer.py`, transformers' `CLIPTokenizer`).
_WORDS = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_SUFFIX = "</w>"


class BPETokenizer:
    """Texts to CLIP's token ids: `[batch, context_length]` int32, padded and truncated.

    Each text becomes `[start, ids..., end, pad, pad, ...]`. A text longer than the
    context is cut so that `end` is still its last id (as open_clip and transformers do),
    or refused with `truncate=False` (as OpenAI's `clip.tokenize`).

    Build it with `BPETokenizer.from_files`.

    Attributes:
        context_length: ids per text.
        start_id, end_id, pad_id: the ids of `<|startoftext|>`, `<|endoftext|>` and of
            padding.
        vocab_size: number of ids (the text model's `vocab_size` must be at least this).
    """

    def __init__(self, tokenizer: Any, *, context_length: int, pad_id: int, truncate: bool):
        """Wraps a configured `tokenizers.Tokenizer`; use `from_files`."""
        self._tokenizer = tokenizer
        self.context_length = context_length
        self.start_id = tokenizer.token_to_id(START_OF_TEXT)
        self.end_id = tokenizer.token_to_id(END_OF_TEXT)
        self.pad_id = pad_id
        self.truncate = truncate
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_files(
        cls,
        vocab_json: str | os.PathLike,
        merges_txt: str | os.PathLike,
        *,
        context_length: int = 77,
        pad_id: int = 0,
        truncate: bool = True,
    ) -> "BPETokenizer":
        """The tokenizer of a `vocab.json` (token to id) and a `merges.txt` (one merge a line).

        The files of CLIP's tokenizer are those of any transformers CLIP checkpoint (e.g.
        `openai/clip-vit-base-patch32`); the vocabulary must hold `<|startoftext|>` and
        `<|endoftext|>`.

        Arguments:
            vocab_json: path of the vocabulary, a JSON object `{token: id}`.
            merges_txt: path of the merges, `"a b"` per line by rank (a first line
                starting with `#version` is skipped).
            context_length: ids per text (77 for CLIP).
            pad_id: the id after the end of a text: 0 as OpenAI's and open_clip's
                tokenizers; transformers' pads with `<|endoftext|>`. The text models pool
                at the first end-of-text (or the largest id), so padding never changes
                an embedding.
            truncate: cut texts longer than the context (keeping `<|endoftext|>` last);
                `False` raises instead.

        Raises:
            ImportError: the `tokenizers` package is missing (`pip install 'scenic-eqx[text]'`).
            FileNotFoundError: a path is not a file.
            ValueError: files `tokenizers` cannot read, a vocabulary without the two
                special tokens, or a `context_length` or `pad_id` out of range.
        """
        tokenizers = require("tokenizers", "text", "scenic_eqx.data.BPETokenizer")
        for name, path in (("vocab_json", vocab_json), ("merges_txt", merges_txt)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"`{name}` must be an existing file. Received: {os.fspath(path)!r}.")
        if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 2:
            raise ValueError(
                "`context_length` must be an int of at least 2 (room for <|startoftext|> and "
                f"<|endoftext|>). Received: {context_length!r}."
            )
        try:
            bpe = tokenizers.models.BPE.from_file(
                os.fspath(vocab_json),
                os.fspath(merges_txt),
                end_of_word_suffix=_SUFFIX,
                unk_token=END_OF_TEXT,
            )
        except Exception as error:  # the Rust library raises plain Exceptions
            raise ValueError(
                "`vocab_json` and `merges_txt` must be a BPE vocabulary (JSON `{token: id}`) and its "
                f"merges (`a b` per line). Received: {os.fspath(vocab_json)!r} and "
                f"{os.fspath(merges_txt)!r}, which cannot be read: {error}"
            ) from None
        tokenizer = tokenizers.Tokenizer(bpe)
        missing = [t for t in (START_OF_TEXT, END_OF_TEXT) if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(
                f"`vocab_json` must hold CLIP's special tokens {START_OF_TEXT} and {END_OF_TEXT}. "
                f"Received: {os.fspath(vocab_json)!r}, without {', '.join(missing)}."
            )
        normalizers, pre_tokenizers = tokenizers.normalizers, tokenizers.pre_tokenizers
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(tokenizers.Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(tokenizers.Regex(_WORDS), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        tokenizer.decoder = tokenizers.decoders.ByteLevel()
        # Written in a caption, the special tokens are the special ids, as in CLIP's tokenizers.
        tokenizer.add_special_tokens([START_OF_TEXT, END_OF_TEXT])
        start, end = tokenizer.token_to_id(START_OF_TEXT), tokenizer.token_to_id(END_OF_TEXT)
        tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{START_OF_TEXT} $A {END_OF_TEXT}",
            special_tokens=[(START_OF_TEXT, start), (END_OF_TEXT, end)],
        )
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"`pad_id` must be an id in [0, {vocab_size}). Received: {pad_id!r}.")
        if truncate:
            tokenizer.enable_truncation(max_length=context_length)
        tokenizer.enable_padding(
            length=context_length, pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id)
        )
        return cls(tokenizer, context_length=context_length, pad_id=pad_id, truncate=truncate)

    def __call__(self, texts: str | Sequence[str | bytes] | np.ndarray) -> np.ndarray:
        """The ids of each text.

        Arguments:
            texts: a string, or a sequence (a list, a numpy array of `str` or UTF-8
                `bytes`, as TFDS gives) of them.

        Returns:
            int32 `[len(texts), context_length]` (`[1, context_length]` for one string).

        Raises:
            TypeError: an element that is neither `str` nor `bytes`.
            ValueError: with `truncate=False`, a text longer than the context.
        """
        batch = (
            [texts] if isinstance(texts, str | bytes) else list(np.asarray(texts, dtype=object).reshape(-1))
        )
        decoded = []
        for i, text in enumerate(batch):
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            if not isinstance(text, str):
                raise TypeError(
                    f"`texts` must hold strings (str, or UTF-8 bytes). Received: {type(text).__name__} "
                    f"at index {i}."
                )
            decoded.append(text)
        encodings = self._tokenizer.encode_batch(decoded)
        too_long = [(i, len(e.ids)) for i, e in enumerate(encodings) if len(e.ids) > self.context_length]
        if too_long:
            i, length = too_long[0]
            raise ValueError(
                f"`texts` must fit in `context_length` (={self.context_length}) ids with `truncate=False`. "
                f"Received: text {i} ({decoded[i][:60]!r}) of {length} ids"
                + (f", and {len(too_long) - 1} more too long." if len(too_long) > 1 else ".")
            )
        return np.asarray([e.ids for e in encodings], dtype=np.int32).reshape(
            len(decoded), self.context_length
        )

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of one row of ids, without special tokens and padding (lower case)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.end_id in ids:
            ids = ids[: ids.index(self.end_id)]
        ids = [i for i in ids if i != self.start_id]
        return self._tokenizer.decode(ids, skip_special_tokens=True).replace(_SUFFIX, " ").strip()


def tokenize_text(
    tokenizer: BPETokenizer, *, key: str | tuple[str, ...] = ("inputs", "text")
) -> Callable[[dict], dict]:
    """A batch function that replaces a batch's captions by their token ids.

    For `data.map_batches(tokenize_text(tokenizer), dataset.train_iter)`: the strings at
    `key` (`[batch]` str or UTF-8 bytes, e.g. a TFDS text feature) become int32
    `[batch, context_length]`; the rest of the batch is kept.

    Arguments:
        tokenizer: the tokenizer.
        key: where the captions are: a key of the batch, or a path of keys into nested
            dicts (`("inputs", "text")` for CLIP's `{"image", "text"}` inputs).

    Returns:
        `fn(batch) -> batch`, which copies the dicts on the path and raises `KeyError`
        naming `key` when the batch has no captions there.
    """
    path = (key,) if isinstance(key, str) else tuple(key)
    if not path or not all(isinstance(k, str) for k in path):
        raise ValueError(f"`key` must be a key or a non-empty tuple of keys. Received: {key!r}.")

    def tokenize(batch: dict) -> dict:
        def replace(node: Any, depth: int) -> dict:
            if not isinstance(node, dict) or path[depth] not in node:
                raise KeyError(
                    f"The batch must hold the captions at `key` (={'/'.join(path)}). Received: a batch "
                    f"whose {'/'.join(path[:depth]) or 'top level'} has keys "
                    f"{sorted(node) if isinstance(node, dict) else type(node).__name__}."
                )
            value = node[path[depth]]
            new = tokenizer(value) if depth == len(path) - 1 else replace(value, depth + 1)
            return {**node, path[depth]: new}

        return replace(batch, 0)

    return tokenize
