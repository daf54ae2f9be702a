"""Character-level tokenizer shared by every zoo model (tiny-* and testbed-*).

Saved with `save_pretrained` as a plain `PreTrainedTokenizerFast`, so the checkpoints load with
`AutoTokenizer.from_pretrained` and no moeq code.
"""

from __future__ import annotations

import string

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
# Printable ASCII without \r\x0b\x0c; newline is a real character of the corpus.
CHARS = tuple(c for c in string.printable if c not in "\r\x0b\x0c\t")
VOCAB: tuple[str, ...] = SPECIALS + CHARS
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def build_tokenizer():
    """A fast char-level tokenizer: one token per character, BOS prepended on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS_ID)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        clean_up_tokenization_spaces=False)
