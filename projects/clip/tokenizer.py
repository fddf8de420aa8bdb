"""A word-level tokenizer over a small closed vocabulary: the captions of `digit_captions.py`.

CLIP reads byte-pair-encoded text (Sennrich et al., "Neural Machine Translation of Rare
Words with Subword Units", ACL 2016); the captions here use about twenty words, so one
id per word is enough, with CLIP's layout of a sequence: a start token, the words, an
end token, then padding up to the context length. The end token has the largest id, so
a text tower that pools at the largest id (OpenAI's CLIP) pools at the end of the text.
"""

import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, START, END = "<pad>", "<start>", "<end>"
_WORDS = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: `"A handwritten 7."` -> `["a", "handwritten", "7", "."]`."""
    return _WORDS.findall(text.lower())


class WordTokenizer:
    """Texts to int32 ids `[len(texts), context_length]`: start, words, end, padding (0).

    Arguments:
        words: the vocabulary (`split_words` of every text it will see); ids follow
            `sorted(set(words))` after `<pad>` (0) and `<start>` (1); `<end>` is last.
        context_length: the length of every sequence, start and end tokens included.
    """

    def __init__(self, words: Iterable[str], *, context_length: int):
        if not isinstance(context_length, int) or context_length < 3:
            raise ValueError(
                f"`context_length` must be an integer of at least 3 (start, a word, end). "
                f"Received: {context_length!r}."
            )
        self.vocabulary = [PAD, START, *sorted(set(words) - {PAD, START, END}), END]
        self.ids = {word: index for index, word in enumerate(self.vocabulary)}
        self.context_length = context_length

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError(f"`texts` must be a list of strings, not one string. Received: {texts!r}.")
        tokens = np.zeros((len(texts), self.context_length), np.int32)
        for row, text in enumerate(texts):
            words = split_words(text)
            unknown = [word for word in words if word not in self.ids]
            if unknown:
                raise ValueError(
                    f"Every word of a text must be in the vocabulary of {self.vocab_size} words. "
                    f"Received: {text!r}, with unknown {unknown}."
                )
            if len(words) + 2 > self.context_length:
                raise ValueError(
                    f"A text must fit the context of {self.context_length} tokens with its start "
                    f"and end tokens. Received: {text!r}, {len(words)} words."
                )
            ids = [self.ids[START], *(self.ids[word] for word in words), self.ids[END]]
            tokens[row, : len(ids)] = ids
        return tokens
