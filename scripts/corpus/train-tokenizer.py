"""Trains the default corpus's tokenizer, corpus/tokenizer.json: a byte-level BPE in the style of
GPT-2's, learnt with Hugging Face tokenizers from corpus/build/train.jsonl (written by
scripts/corpus/build-corpus.mjs). The validation documents are not seen.

  model          BPE, no unknown token (every byte has a token, so any text encodes)
  pre-tokenizer  ByteLevel(add_prefix_space=False, use_regex=True): GPT-2's regex split, bytes
                 shown as printable characters ("Ġ" for a space)
  decoder        ByteLevel; post-processor ByteLevel(trim_offsets=False) (adds no tokens)
  vocabulary     --vocab-size ids in all (default 8192): the 256 byte tokens, the merges learnt
                 from the training documents, and <|endoftext|> as the LAST id (vocab-size - 1),
                 as in GPT-2. It is the BOS and EOS token (lib/lm/tokenizer.ts finds it by
                 name) and separates documents in token shards.

How it was run (from the repository root; the venv is outside the repository, no network):
  python3 -m venv /tmp/lm-venv
  /tmp/lm-venv/bin/pip install --no-index --find-links /opt/pypi/files --find-links /opt/wheels tokenizers
  /tmp/lm-venv/bin/python scripts/corpus/train-tokenizer.py
with Python 3.11.7 and tokenizers 0.23.2. The BPE trainer is deterministic for the same input
and version, so running it again on the same train.jsonl rewrites the same file.
"""

import argparse
import json
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parents[2]
END_OF_TEXT = "<|endoftext|>"

# Round-trip checks on the written file: e-mail, HTML, base64, code, Unicode, whitespace.
SAMPLES = [
    "From: alice@example.com\r\nSubject: Re: [spam] =?utf-8?q?caf=C3=A9?=\r\n\r\nHi Bob,\n> quoted\n",
    '<html><body bgcolor="#FFFFFF"><a href="http://example.com/?a=1&amp;b=2">click</a></body></html>',
    "Content-Transfer-Encoding: base64\n\nR0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==\n",
    "def f(x: int) -> int:\n\treturn x ** 2  # square\n\nclass A(B):\n    pass\n",
    "const xs = [1, 2, 3].map((x) => x * 2); // doubled\n",
    "Café naïve Straße — “quoted” 日本語 中文 한국어 😀👍🏽 👨‍👩‍👧 🇫🇷 \U0010ffff",
    "   leading, trailing   \n\n\n\ttabs\t\r\n NUL \u0000 DEL \u007f",
    "before<|endoftext|>after",
]


def documents(path: pathlib.Path):
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=pathlib.Path, default=ROOT / "corpus" / "build" / "train.jsonl")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "corpus" / "tokenizer.json")
    parser.add_argument("--vocab-size", type=int, default=8192, help="ids in all, <|endoftext|> included (default 8192)")
    args = parser.parse_args()
    if args.vocab_size < 258:
        parser.error("--vocab-size must be at least 258 (256 bytes, one merge, <|endoftext|>)")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size - 1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents(args.train), trainer)
    tokenizer.add_special_tokens([END_OF_TEXT])
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    end_of_text = tokenizer.token_to_id(END_OF_TEXT)
    assert vocab_size == args.vocab_size and end_of_text == args.vocab_size - 1, (vocab_size, end_of_text)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp = args.out.with_name(args.out.name + ".tmp")
    tokenizer.save(str(temp))
    temp.replace(args.out)

    saved = Tokenizer.from_file(str(args.out))
    for text in SAMPLES:
        ids = saved.encode(text, add_special_tokens=False).ids
        assert saved.decode(ids, skip_special_tokens=False) == text, text
    merges = len(json.loads(args.out.read_text(encoding="utf-8"))["model"]["merges"])
    print(f"{args.out}: vocabulary {vocab_size} (256 bytes, {merges} merges, {END_OF_TEXT} = {end_of_text}), {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
