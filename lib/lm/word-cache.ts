/**
 * A memo in front of @huggingface/tokenizers for byte-level BPE tokenizers (GPT-2's kind): the
 * ids of each pre-token ("word") are asked of the library once, then reused.
 *
 * Why it gives the library's ids: with no normalizer and the ByteLevel pre-tokenizer (regex on, no
 * prefix space), the library cuts a text that holds no added token into pre-tokens with
 * BYTE_LEVEL_PATTERN and encodes each on its own (BPE never merges across them, nothing is fused
 * across them), so the ids of a text are the ids of its pre-tokens in order; and a pre-token given
 * alone is cut into itself. A text that holds an added token's content, a request for special
 * tokens, or a tokenizer of another shape goes to the library whole. When it is built, the memo
 * also checks itself against the library on a probe text (contractions, whitespace runs, digits,
 * punctuation, accents, CJK, emoji) and is not used if they differ.
 *
 * Why: the library spends a few microseconds per token even on words it has seen; the memo's
 * cost is a regex match and a map lookup per word (about 20× faster on the shipped corpus once
 * warm).
 */

/** GPT-2's pre-tokenization, as the library's ByteLevel pre-tokenizer applies it (use_regex). */
export const BYTE_LEVEL_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Words kept (each shorter than MAX_WORD_CHARS); past that the memo starts again. */
const MAX_WORDS = 200_000;
const MAX_WORD_CHARS = 256;

const PROBE =
  "Don't stop: it's 3.14159, they'll say. We've  two\tspaces\n\n  and   runs   \n" +
  "naïve café Ünïcödé, 東京タワー, emoji 🚀🔥, numbers 1234567 and 12ab34, a@b.c <tag attr='x'>text</tag>\r\n" +
  "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo= ''' \"\" --- ... \u00a0non-breaking\u2003em space ";

type Spec = Record<string, unknown>;

export class WordCache {
  readonly #encodeWord: (word: string) => Int32Array;
  readonly #addedContents: string[];
  #words = new Map<string, Int32Array>();

  private constructor(encodeWord: (word: string) => Int32Array, addedContents: string[]) {
    this.#encodeWord = encodeWord;
    this.#addedContents = addedContents;
  }

  /**
   * A memo for the tokenizer of `spec` (its tokenizer.json), over `encode` (the library's, without
   * special tokens); null when the tokenizer is not of the shape the memo is exact for.
   */
  static for(spec: Spec, encode: (text: string) => Int32Array): WordCache | null {
    const pre = spec['pre_tokenizer'] as Spec | null | undefined;
    const model = spec['model'] as Spec | null | undefined;
    const shaped =
      spec['normalizer'] == null &&
      pre?.['type'] === 'ByteLevel' &&
      pre['add_prefix_space'] !== true &&
      pre['use_regex'] !== false &&
      model?.['type'] === 'BPE' &&
      !model['dropout'] &&
      !model['fuse_unk'];
    if (!shaped) return null;
    const added = Array.isArray(spec['added_tokens']) ? (spec['added_tokens'] as Spec[]) : [];
    const contents = added.map((token) => token['content']).filter((c): c is string => typeof c === 'string' && c.length > 0);
    const cache = new WordCache(encode, contents);
    const expected = encode(PROBE);
    const got = cache.encode(PROBE);
    if (got === null || got.length !== expected.length || got.some((id, k) => id !== expected[k])) return null;
    cache.#words.clear();
    return cache;
  }

  /** The ids of `text`, or null when it holds an added token's content (the library's work). */
  encode(text: string): Int32Array | null {
    for (const content of this.#addedContents) if (text.includes(content)) return null;
    const words = text.match(BYTE_LEVEL_PATTERN) ?? [];
    const parts: Int32Array[] = new Array(words.length);
    let total = 0;
    for (let k = 0; k < words.length; k++) {
      const word = words[k]!;
      let ids = this.#words.get(word);
      if (ids === undefined) {
        ids = this.#encodeWord(word);
        if (word.length < MAX_WORD_CHARS) {
          if (this.#words.size >= MAX_WORDS) this.#words = new Map();
          this.#words.set(word, ids);
        }
      }
      parts[k] = ids;
      total += ids.length;
    }
    const out = new Int32Array(total);
    let at = 0;
    for (const ids of parts) {
      out.set(ids, at);
      at += ids.length;
    }
    return out;
  }
}
