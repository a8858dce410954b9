/**
 * A model's tokenizer, from the `tokenizer.json` in its folder (the Hugging Face tokenizers
 * format), run by @huggingface/tokenizers in plain JavaScript: nothing native, nothing fetched.
 *
 * encode gives the ids Python's `tokenizers.Tokenizer.encode(text, add_special_tokens=False)`
 * gives (special tokens are added only when asked; special-token text such as "<|endoftext|>"
 * inside the input is still matched as that token, as in Python), but around U+0085 and U+FEFF:
 * the JavaScript library's byte-level split counts U+FEFF as whitespace and U+0085 as not, as
 * JavaScript's \s does, where Python's regular expressions do the opposite, so a run of spaces
 * next to either is split differently (any other text gives the same ids). For byte-level BPE it reuses
 * the library's ids word by word (lib/lm/word-cache.ts). decode is the exact inverse for
 * byte-level BPE (GPT-2's tokenizer): no clean-up of spaces around punctuation, so any
 * well-formed Unicode text round-trips.
 *
 * The BOS and EOS tokens are the bos_token / eos_token of tokenizer_config.json when it names
 * them, else config.json's bos_token_id / eos_token_id, else "<|endoftext|>" (GPT-2's tokenizer
 * default) when the vocabulary has it, else null.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Tokenizer as UntypedHfTokenizer } from '@huggingface/tokenizers';

import { modelFolderProblem } from './default-model.js';
import { WordCache } from './word-cache.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. The package's own .d.ts files use
 * extensionless relative imports, which NodeNext resolution does not follow (the import arrives
 * as `any`), so it is typed here.
 */
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}
const HfTokenizer = UntypedHfTokenizer as new (tokenizerJson: object, tokenizerConfig: object) => HfTokenizer;

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** A tokenizer file that is missing or cannot be loaded; `field` names the part at fault. */
export class TokenizerError extends Error {
  /** The file (or folder) at fault. */
  readonly path: string;
  readonly field?: string;

  constructor(filePath: string, field: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${filePath}: ${field === undefined ? '' : `${field}: `}${detail}`, options);
    this.name = 'TokenizerError';
    this.path = filePath;
    if (field !== undefined) this.field = field;
  }
}

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (its post-processor's template); default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens out of the text; default false. */
  skipSpecialTokens?: boolean;
}

/** GPT-2's end-of-text token: the BOS and EOS when nothing else names them. */
const GPT2_END_OF_TEXT = '<|endoftext|>';

export class Tokenizer {
  /** The tokenizer.json it was loaded from. */
  readonly path: string;
  /** Ids run from 0 to vocabSize − 1 (added tokens included). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly #hf: HfTokenizer;
  /** The library's ids memoised per word, for tokenizers of GPT-2's kind (lib/lm/word-cache.ts). */
  readonly #words: WordCache | null;

  private constructor(filePath: string, hf: HfTokenizer, words: WordCache | null, bosTokenId: number | null, eosTokenId: number | null, vocabSize: number) {
    this.path = filePath;
    this.#hf = hf;
    this.#words = words;
    this.bosTokenId = bosTokenId;
    this.eosTokenId = eosTokenId;
    this.vocabSize = vocabSize;
  }

  /** Loads `dir`/tokenizer.json (and tokenizer_config.json, config.json for BOS/EOS when present). */
  static async load(dir: string): Promise<Tokenizer> {
    const problem = await modelFolderProblem(dir); // also rejects a dir that is not a non-empty string
    if (problem !== null) throw new TokenizerError(dir, undefined, problem);
    const tokenizerPath = path.join(dir, TOKENIZER_FILE);
    const json = await readJsonFile(tokenizerPath, true);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new TokenizerError(tokenizerPath, undefined, 'must hold a JSON object');
    }
    const spec = json as Record<string, unknown>;
    const model = spec['model'];
    if (typeof model !== 'object' || model === null || Array.isArray(model)) {
      throw new TokenizerError(tokenizerPath, 'model', `must be an object (got ${model === undefined ? 'nothing' : JSON.stringify(model)})`);
    }
    if (spec['added_tokens'] !== undefined && !Array.isArray(spec['added_tokens'])) {
      throw new TokenizerError(tokenizerPath, 'added_tokens', 'must be an array');
    }

    const configPath = path.join(dir, TOKENIZER_CONFIG_FILE);
    const tokenizerConfig = asObject(await readJsonFile(configPath, false), configPath);
    // tokenizer_config.json gives only the special tokens' names: encoding follows tokenizer.json
    // alone, as Python's tokenizers does, and decode never cleans up spaces.
    const libraryConfig: Record<string, unknown> = { clean_up_tokenization_spaces: false };
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const) {
      const name = tokenName(tokenizerConfig?.[key]);
      if (name !== null) libraryConfig[key] = name;
    }

    let hf: HfTokenizer;
    const fullSpec = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...spec };
    try {
      hf = new HfTokenizer(fullSpec, libraryConfig);
    } catch (error) {
      throw new TokenizerError(tokenizerPath, undefined, `is not a tokenizer that can be loaded (${(error as Error).message})`, { cause: error });
    }
    let vocabSize = 0;
    for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
    if (vocabSize === 0) throw new TokenizerError(tokenizerPath, 'model.vocab', 'the vocabulary is empty');

    const modelConfig = await readModelConfigLeniently(path.join(dir, 'config.json'));
    const specialId = (key: 'bos' | 'eos'): number | null => {
      const named = tokenName(tokenizerConfig?.[`${key}_token`]);
      if (named !== null) return hf.token_to_id(named) ?? null;
      const fromModel = modelConfig?.[`${key}_token_id`];
      if (typeof fromModel === 'number' && Number.isSafeInteger(fromModel) && fromModel >= 0 && fromModel < vocabSize) return fromModel;
      return hf.token_to_id(GPT2_END_OF_TEXT) ?? null;
    };
    const words = WordCache.for(fullSpec, (text) => Int32Array.from(hf.encode(text, { add_special_tokens: false }).ids));
    return new Tokenizer(tokenizerPath, hf, words, specialId('bos'), specialId('eos'), vocabSize);
  }

  /** The ids of `text`. */
  encode(text: string, options: EncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new TypeError(`text must be a string (got ${typeof text})`);
    if (text === '') return new Int32Array(0);
    const addSpecialTokens = options.addSpecialTokens ?? false;
    const memoised = addSpecialTokens ? null : (this.#words?.encode(text) ?? null);
    if (memoised !== null) return memoised;
    const { ids } = this.#hf.encode(text, { add_special_tokens: addSpecialTokens });
    return Int32Array.from(ids);
  }

  /** The text of `ids` (each an integer in [0, vocabSize)). */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (typeof ids !== 'object' || ids === null || typeof ids.length !== 'number') {
      throw new TypeError('ids must be an array of token ids');
    }
    const list = Array.from(ids);
    list.forEach((id, i) => {
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`ids[${i}] must be an integer in [0, ${this.vocabSize}) (got ${id})`);
      }
    });
    if (list.length === 0) return '';
    return this.#hf.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** The vocabulary's string for `id` (byte-level BPE: bytes shown as printable characters, "Ġ" for a space). */
  idToToken(id: number): string | null {
    return Number.isSafeInteger(id) && id >= 0 && id < this.vocabSize ? (this.#hf.id_to_token(id) ?? null) : null;
  }

  /** The id of a vocabulary string, or null. */
  tokenToId(token: string): number | null {
    return this.#hf.token_to_id(token) ?? null;
  }

  /**
   * A label for one token that tells it apart from the others: its text, but for a byte-level token
   * holding part of a UTF-8 character (whose text alone is "�"), its whole characters as text and
   * its stray bytes as <0xNN>, e.g. <0xC3> for the first half of "é".
   */
  tokenLabel(id: number): string {
    const text = this.decode([id]);
    if (!text.includes('\uFFFD')) return text;
    const bytes = byteLevelBytes(this.idToToken(id) ?? '');
    return bytes === null ? text : labelBytes(bytes);
  }
}

/** GPT-2's byte-level alphabet, inverted: the byte each printable stand-in character is for. */
const BYTE_OF_CHAR: ReadonlyMap<number, number> = (() => {
  const map = new Map<number, number>();
  let next = 256; // bytes without a printable character of their own take 256, 257, ... in order
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(printable ? b : next++, b);
  }
  return map;
})();

/** The bytes a byte-level vocabulary string stands for; null when it is not one. */
function byteLevelBytes(token: string): Uint8Array | null {
  const out: number[] = [];
  for (const ch of token) {
    const b = BYTE_OF_CHAR.get(ch.codePointAt(0)!);
    if (b === undefined) return null;
    out.push(b);
  }
  return out.length > 0 ? Uint8Array.from(out) : null;
}

/** Bytes as text where they form whole UTF-8 characters, <0xNN> for each byte that does not. */
function labelBytes(bytes: Uint8Array): string {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i]!;
    const length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length > 0 && i + length <= bytes.length) {
      try {
        out += decoder.decode(bytes.subarray(i, i + length));
        i += length;
        continue;
      } catch {
        // not a whole character: its lead byte is shown alone below
      }
    }
    out += `<0x${lead.toString(16).toUpperCase().padStart(2, '0')}>`;
    i += 1;
  }
  return out;
}

/** A JSON file's contents; a missing optional file gives undefined. */
async function readJsonFile(filePath: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(filePath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENOTDIR') && !required) return undefined;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new TokenizerError(filePath, undefined, 'not found (a model folder holds its tokenizer as tokenizer.json)', { cause: error });
    }
    throw new TokenizerError(filePath, undefined, `cannot be read (${(error as Error).message})`, { cause: error });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TokenizerError(filePath, undefined, `not valid JSON (${(error as Error).message})`, { cause: error });
  }
}

/** An optional JSON file's object, or null when the file is absent. */
function asObject(value: unknown, filePath: string): Record<string, unknown> | null {
  if (value === undefined) return null;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  throw new TokenizerError(filePath, undefined, 'must hold a JSON object');
}

/** The model's config.json as an object, or null: the tokenizer does not depend on its being valid. */
async function readModelConfigLeniently(filePath: string): Promise<Record<string, unknown> | null> {
  try {
    const value: unknown = JSON.parse(await readFile(filePath, 'utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** A special token as tokenizer_config.json writes it: a string, or an object with "content". */
function tokenName(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>)['content'] === 'string') {
    return (value as Record<string, unknown>)['content'] as string;
  }
  return null;
}
