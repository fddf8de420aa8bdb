"""`data.BPETokenizer`: CLIP's conventions on a small generated vocabulary, the references' ids.

`fixtures/clip_tokenizer/` holds a vocabulary in CLIP's layout, its merges and the ids of
open_clip's and transformers' CLIP tokenizers for a few texts, written by
`tools/make_clip_fixtures.py`.
"""

import json
import pathlib
import sys

import numpy as np
import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

from scenic_eqx import data

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "clip_tokenizer"
EXPECTED = dict(np.load(FIXTURES / "expected_ids.npz"))
CONTEXT = EXPECTED["open_clip"].shape[1]


def fixture_tokenizer(**kwargs) -> data.BPETokenizer:
    return data.BPETokenizer.from_files(
        FIXTURES / "vocab.json", FIXTURES / "merges.txt", context_length=CONTEXT, **kwargs
    )


def test_ids_are_open_clips_and_transformers():
    texts = [str(t) for t in EXPECTED["texts"]]
    tokenizer = fixture_tokenizer()
    ids = tokenizer(texts)
    assert ids.dtype == np.int32 and ids.shape == (len(texts), CONTEXT)
    # open_clip names its special tokens otherwise, and reads the last text's
    # `<|endoftext|>` as characters; transformers, as OpenAI, as the special token.
    np.testing.assert_array_equal(ids[:-1], EXPECTED["open_clip"][:-1])
    transformers = fixture_tokenizer(pad_id=tokenizer.end_id)
    np.testing.assert_array_equal(transformers(texts), EXPECTED["transformers"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A vocabulary in CLIP's layout from merges trained on a few captions by `tokenizers`."""
    captions = ["a photo of a cat", "a photo of a dog", "the cat and the dog", "photos of cats"] * 3
    trainer_tokenizer = tokenizers.Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=2000,  # more than there are pairs to merge: each caption word becomes one token
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    trainer_tokenizer.train_from_iterator(captions, trainer)
    directory = tmp_path_factory.mktemp("bpe")
    trainer_tokenizer.model.save(str(directory))
    merges = [
        line
        for line in (directory / "merges.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges)]
    vocab = {token: i for i, token in enumerate([*tokens, "<|startoftext|>", "<|endoftext|>"])}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return directory / "vocab.json", directory / "merges.txt", vocab


def test_clip_conventions(files):
    vocab_json, merges_txt, vocab = files
    tokenizer = data.BPETokenizer.from_files(vocab_json, merges_txt, context_length=8)
    start, end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert (tokenizer.start_id, tokenizer.end_id, tokenizer.vocab_size) == (start, end, len(vocab))
    # Whole trained words are one id each, with the end-of-word suffix; then padding with 0.
    expected = [start, vocab["a</w>"], vocab["photo</w>"], vocab["of</w>"], vocab["cat</w>"], end, 0, 0]
    np.testing.assert_array_equal(tokenizer("a photo of cat"), [expected])
    # Lower-cased, whitespace collapsed, bytes and numpy arrays of strings accepted.
    same = tokenizer([b"A  PHOTO of\tCat", np.str_(" a photo of cat ")])
    np.testing.assert_array_equal(same, [expected, expected])
    np.testing.assert_array_equal(tokenizer(np.asarray([b"a photo of cat"], dtype=object)), [expected])
    # An unseen word falls back to smaller pieces; punctuation is a word of its own.
    ids = tokenizer("cab!")[0]
    pieces = ids[1 : ids.tolist().index(end)]
    assert len(pieces) > 2 and pieces[-1] == vocab["!</w>"] and "cab</w>" not in vocab
    assert tokenizer.decode(ids) == "cab !"
    assert tokenizer.decode(tokenizer("the cat and the dog.")[0]) == "the cat and the dog ."
    np.testing.assert_array_equal(tokenizer(""), [[start, end, 0, 0, 0, 0, 0, 0]])


def test_long_texts_keep_the_end_token_or_are_refused(files):
    vocab_json, merges_txt, vocab = files
    long = "a photo of a cat and a photo of a dog"
    ids = data.BPETokenizer.from_files(vocab_json, merges_txt, context_length=6)(long)[0]
    assert ids.tolist() == [
        vocab["<|startoftext|>"],
        vocab["a</w>"],
        vocab["photo</w>"],
        vocab["of</w>"],
        vocab["a</w>"],
        vocab["<|endoftext|>"],
    ]
    strict = data.BPETokenizer.from_files(vocab_json, merges_txt, context_length=6, truncate=False)
    assert strict("a cat").shape == (1, 6)
    with pytest.raises(
        ValueError,
        match=r"`texts` must fit in `context_length` \(=6\) ids with `truncate=False`\. Received: text 1 "
        r"\('a photo of a cat and a photo of a dog'\) of 13 ids\.",
    ):
        strict(["a cat", long])


def test_tokenize_text_maps_the_captions_of_a_batch():
    tokenizer = fixture_tokenizer()
    texts = [str(t) for t in EXPECTED["texts"][:3]]
    batch = {
        "inputs": {
            "image": np.zeros((3, 4, 4, 3), np.float32),
            "text": np.asarray([t.encode() for t in texts]),
        },
        "batch_mask": np.ones(3, np.float32),
    }
    out = data.tokenize_text(tokenizer)(batch)
    np.testing.assert_array_equal(out["inputs"]["text"], EXPECTED["open_clip"][:3])
    assert out["inputs"]["image"] is batch["inputs"]["image"] and out["batch_mask"] is batch["batch_mask"]
    assert batch["inputs"]["text"].dtype.kind == "S"  # the batch given is left as it was
    # Resumable iterators stay resumable: `map_batches` keeps their state.
    mapped = data.map_batches(data.tokenize_text(tokenizer, key="caption"), iter([{"caption": texts}]))
    np.testing.assert_array_equal(next(mapped)["caption"], EXPECTED["open_clip"][:3])
    with pytest.raises(
        KeyError,
        match=r"captions at `key` \(=inputs/text\)\. Received: a batch whose inputs has keys \['image'\]",
    ):
        data.tokenize_text(tokenizer)({"inputs": {"image": batch["inputs"]["image"]}})


def test_bad_arguments(files, tmp_path, monkeypatch):
    vocab_json, merges_txt, vocab = files
    with pytest.raises(
        FileNotFoundError, match=r"`vocab_json` must be an existing file\. Received: '.*missing.json'"
    ):
        data.BPETokenizer.from_files(tmp_path / "missing.json", merges_txt)
    with pytest.raises(ValueError, match=r"`context_length` must be an int of at least 2 .* Received: 1\."):
        data.BPETokenizer.from_files(vocab_json, merges_txt, context_length=1)
    with pytest.raises(ValueError, match=rf"`pad_id` must be an id in \[0, {len(vocab)}\)\. Received: -1\."):
        data.BPETokenizer.from_files(vocab_json, merges_txt, pad_id=-1)
    plain = {k: v for k, v in vocab.items() if not k.startswith("<|")}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    with pytest.raises(
        ValueError, match=r"must hold CLIP's special tokens .* without <\|startoftext\|>, <\|endoftext\|>"
    ):
        data.BPETokenizer.from_files(tmp_path / "plain.json", merges_txt)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must be a BPE vocabulary .* which cannot be read"):
        data.BPETokenizer.from_files(tmp_path / "bad.json", merges_txt)
    tokenizer = data.BPETokenizer.from_files(vocab_json, merges_txt)
    with pytest.raises(
        TypeError, match=r"`texts` must hold strings \(str, or UTF-8 bytes\)\. Received: int at index 1"
    ):
        tokenizer(["a cat", 3])
    with pytest.raises(
        ValueError, match=r"`key` must be a key or a non-empty tuple of keys\. Received: \(\)"
    ):
        data.tokenize_text(tokenizer, key=())
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(
        ImportError, match=r"needs tokenizers, which is not installed: pip install 'scenic-eqx\[text\]'"
    ):
        data.BPETokenizer.from_files(vocab_json, merges_txt)
