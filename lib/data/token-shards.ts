/**
 * Token shards: a tokenised corpus as one compact binary file, so that training reads token ids
 * at any position without tokenising text again.
 *
 * Layout (all integers little-endian):
 *   offset  size  field
 *        0     8  magic "MSTOKENS" (ASCII)
 *        8     4  u32 version (1)
 *       12     4  u32 header bytes: where the tokens start (64 in version 1)
 *       16     4  u32 vocabulary size: every token is below it
 *       20     4  u32 token width in bytes: 2 (uint16) when the vocabulary size is at most 65,536,
 *                 else 4 (uint32)
 *       24     8  u64 token count
 *       32    32  SHA-256 of the token bytes (everything after the header)
 *       64        the tokens, token count × width bytes; nothing follows them
 * Documents are separated by the tokenizer's EOS token in the stream (none before the first or
 * after the last); which id that is is the tokenizer's business, not the shard's.
 *
 * Writing is atomic (lib/io/atomic.ts). Reading the header checks the magic, version, widths and
 * that the file is exactly as long as the header says (a truncated or extended file is an error);
 * verifying also reads every token, checks it against the vocabulary size and the checksum.
 * Readers fetch ranges of tokens by positional reads, never the whole file.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';

import { writeFileAtomic } from '../io/atomic.js';
import { readFullyAt, sha256Digest } from '../io/large-files.js';

export const TOKEN_SHARD_MAGIC = 'MSTOKENS';
export const TOKEN_SHARD_VERSION = 1;
export const TOKEN_SHARD_HEADER_BYTES = 64;
/** Largest vocabulary a shard may declare: token ids are handed out as Int32Array. */
export const MAX_TOKEN_SHARD_VOCAB = 2 ** 31;

export interface TokenShardInfo {
  path: string;
  vocabSize: number;
  /** Bytes per token: 2 (uint16) or 4 (uint32). */
  tokenBytes: 2 | 4;
  tokens: number;
  /** SHA-256 of the token bytes, lowercase hex. */
  sha256: string;
}

/** A token shard that is malformed, truncated or corrupt; `field` names the part at fault. */
export class TokenShardError extends Error {
  /** The shard file at fault. */
  readonly path: string;
  readonly field?: string;

  constructor(filePath: string, field: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(`${filePath}: ${field === undefined ? '' : `${field}: `}${detail}`, options);
    this.name = 'TokenShardError';
    this.path = filePath;
    if (field !== undefined) this.field = field;
  }
}

export interface TokenShardReader {
  info: TokenShardInfo;
  /** Whether the tokens were read into memory when the shard was opened. */
  readonly preloaded: boolean;
  /** Tokens [start, start + count) of the shard (positional reads; concurrent calls are fine). */
  read(start: number, count: number): Promise<Int32Array>;
  /**
   * Tokens [start, start + count) as a view of the tokens in memory, without a copy: for preloaded
   * readers only (a RangeError otherwise). The view must not be modified.
   */
  view(start: number, count: number): Int32Array;
  close(): Promise<void>;
}

export interface OpenTokenShardOptions {
  /**
   * Read all the tokens into memory on opening (one read, the file closed at once), so that each
   * read() is a copy instead of a file read: for shards that fit in memory and are read many times
   * in small pieces, as when contexts are served in a shuffled order. Default false.
   */
  preload?: boolean;
}

const LITTLE_ENDIAN = endianness() === 'LE';
/** Bytes hashed per read while verifying (a multiple of both widths). */
const VERIFY_CHUNK_BYTES = 1 << 22;

/** The token width for a vocabulary: 2 bytes up to 65,536 ids, else 4. */
export function tokenBytesFor(vocabSize: number): 2 | 4 {
  return vocabSize <= 0x10000 ? 2 : 4;
}

function checkVocabSize(vocabSize: unknown): number {
  if (typeof vocabSize !== 'number' || !Number.isSafeInteger(vocabSize) || vocabSize < 1 || vocabSize > MAX_TOKEN_SHARD_VOCAB) {
    throw new RangeError(`vocabSize must be an integer in [1, ${MAX_TOKEN_SHARD_VOCAB}] (got ${String(vocabSize)})`);
  }
  return vocabSize;
}

/** A zeroed byte array on its own ArrayBuffer (so 2- and 4-byte views of it are aligned). */
function alignedBytes(length: number): Buffer {
  return Buffer.from(new ArrayBuffer(length));
}

/** Writes `tokens` (each an integer in [0, vocabSize)) as a token shard at `path`, atomically. */
export async function writeTokenShard(path: string, tokens: Uint16Array | Uint32Array | Int32Array, vocabSize: number): Promise<TokenShardInfo> {
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  if (!(tokens instanceof Uint16Array || tokens instanceof Uint32Array || tokens instanceof Int32Array)) {
    throw new TypeError('tokens must be a Uint16Array, Uint32Array or Int32Array');
  }
  checkVocabSize(vocabSize);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token < 0 || token >= vocabSize) throw new RangeError(`tokens[${i}] is ${token}, not in [0, ${vocabSize}) (vocabSize)`);
  }
  const tokenBytes = tokenBytesFor(vocabSize);
  const file = alignedBytes(TOKEN_SHARD_HEADER_BYTES + tokens.length * tokenBytes);
  const body = file.subarray(TOKEN_SHARD_HEADER_BYTES);
  const view = tokenBytes === 2 ? new Uint16Array(file.buffer, TOKEN_SHARD_HEADER_BYTES, tokens.length) : new Uint32Array(file.buffer, TOKEN_SHARD_HEADER_BYTES, tokens.length);
  view.set(tokens);
  if (!LITTLE_ENDIAN) {
    if (tokenBytes === 2) body.swap16();
    else body.swap32();
  }
  const digest = sha256Digest(body); // in pieces: one Hash.update() refuses 2 GiB (2^30 16-bit tokens)
  file.write(TOKEN_SHARD_MAGIC, 0, TOKEN_SHARD_MAGIC.length, 'ascii'); // the length too: without it nothing is written into a Buffer over 2 GiB
  file.writeUInt32LE(TOKEN_SHARD_VERSION, 8);
  file.writeUInt32LE(TOKEN_SHARD_HEADER_BYTES, 12);
  file.writeUInt32LE(vocabSize, 16);
  file.writeUInt32LE(tokenBytes, 20);
  file.writeBigUInt64LE(BigInt(tokens.length), 24);
  digest.copy(file, 32);
  await writeFileAtomic(path, file);
  return { path, vocabSize, tokenBytes, tokens: tokens.length, sha256: digest.toString('hex') };
}

interface ShardHeader {
  info: TokenShardInfo;
  headerBytes: number;
}

/** Reads and checks the header of an open shard of `fileBytes` bytes. */
async function readHeader(path: string, handle: FileHandle, fileBytes: number): Promise<ShardHeader> {
  const header = Buffer.alloc(TOKEN_SHARD_HEADER_BYTES);
  const { bytesRead } = await handle.read(header, 0, TOKEN_SHARD_HEADER_BYTES, 0);
  const magic = header.subarray(0, Math.min(bytesRead, TOKEN_SHARD_MAGIC.length));
  if (bytesRead < TOKEN_SHARD_MAGIC.length || magic.toString('latin1') !== TOKEN_SHARD_MAGIC) {
    throw new TokenShardError(path, 'magic', `not a token shard: it does not begin with "${TOKEN_SHARD_MAGIC}" (got ${JSON.stringify(magic.toString('latin1'))})`);
  }
  if (bytesRead < TOKEN_SHARD_HEADER_BYTES) {
    throw new TokenShardError(path, 'header', `truncated: ${fileBytes} bytes, shorter than the ${TOKEN_SHARD_HEADER_BYTES}-byte header`);
  }
  const version = header.readUInt32LE(8);
  if (version !== TOKEN_SHARD_VERSION) {
    throw new TokenShardError(path, 'version', `version ${version} is not supported (this reader knows version ${TOKEN_SHARD_VERSION})`);
  }
  const headerBytes = header.readUInt32LE(12);
  if (headerBytes < TOKEN_SHARD_HEADER_BYTES) {
    throw new TokenShardError(path, 'headerBytes', `${headerBytes} is less than the ${TOKEN_SHARD_HEADER_BYTES} bytes of the header fields`);
  }
  const vocabSize = header.readUInt32LE(16);
  if (vocabSize < 1 || vocabSize > MAX_TOKEN_SHARD_VOCAB) {
    throw new TokenShardError(path, 'vocabSize', `${vocabSize} is not in [1, ${MAX_TOKEN_SHARD_VOCAB}]`);
  }
  const tokenBytes = header.readUInt32LE(20);
  if (tokenBytes !== 2 && tokenBytes !== 4) throw new TokenShardError(path, 'tokenBytes', `${tokenBytes} is not 2 or 4`);
  if (tokenBytes !== tokenBytesFor(vocabSize)) {
    throw new TokenShardError(
      path,
      'tokenBytes',
      tokenBytes === 2
        ? `2-byte tokens cannot hold a vocabulary of ${vocabSize} (at most 65536)`
        : `is 4, but a vocabulary of ${vocabSize} is stored in 2-byte tokens (4 only above 65536)`,
    );
  }
  const count = header.readBigUInt64LE(24);
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) throw new TokenShardError(path, 'tokens', `token count ${count} is too large`);
  const tokens = Number(count);
  const expected = headerBytes + tokens * tokenBytes;
  if (fileBytes < expected) {
    throw new TokenShardError(
      path,
      'tokens',
      `truncated: the header says ${tokens} tokens (${tokens * tokenBytes} bytes after a ${headerBytes}-byte header, ${expected} in all) but the file has ${fileBytes} bytes`,
    );
  }
  if (fileBytes > expected) {
    throw new TokenShardError(path, 'tokens', `${fileBytes - expected} bytes follow the ${tokens} tokens the header declares (the file has ${fileBytes} bytes, expected ${expected})`);
  }
  const sha256 = header.subarray(32, 64).toString('hex');
  return { info: { path, vocabSize, tokenBytes, tokens, sha256 }, headerBytes };
}

async function openShardFile(path: string): Promise<FileHandle> {
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  try {
    return await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TokenShardError(path, undefined, code === 'ENOENT' ? 'no such file' : `cannot be opened (${(error as Error).message})`, { cause: error });
  }
}

/** The size of the opened file at `path`; a folder (which opens for reading) is refused. */
async function shardFileBytes(path: string, handle: FileHandle): Promise<number> {
  const stats = await handle.stat();
  if (stats.isDirectory()) throw new TokenShardError(path, undefined, 'is a folder, not a token shard');
  return stats.size;
}

async function withHeader<T>(path: string, use: (handle: FileHandle, header: ShardHeader) => Promise<T>): Promise<T> {
  const handle = await openShardFile(path);
  try {
    const header = await readHeader(path, handle, await shardFileBytes(path, handle));
    return await use(handle, header);
  } finally {
    await handle.close();
  }
}

/** The header of the shard at `path`, checked against the file's size (not the checksum). */
export async function readTokenShardHeader(path: string): Promise<TokenShardInfo> {
  return withHeader(path, async (_handle, header) => header.info);
}

/** Reads exactly `bytes.length` bytes at `position`, or throws naming the shard. */
/** The error of a shard whose file ends before the tokens its header counts (was it changed while open?). */
function endOfTokens(path: string): (byte: number) => TokenShardError {
  return (byte) => new TokenShardError(path, 'tokens', `unexpected end of file at byte ${byte} (was the file changed while open?)`);
}

/** Token values of little-endian `bytes` (on an aligned buffer) as Int32Array. */
function decodeTokens(bytes: Buffer, tokenBytes: 2 | 4): Int32Array {
  if (!LITTLE_ENDIAN) {
    if (tokenBytes === 2) bytes.swap16();
    else bytes.swap32();
  }
  const count = bytes.length / tokenBytes;
  const values = tokenBytes === 2 ? new Uint16Array(bytes.buffer, bytes.byteOffset, count) : new Uint32Array(bytes.buffer, bytes.byteOffset, count);
  const out = new Int32Array(count);
  out.set(values);
  return out;
}

/**
 * The header of the shard at `path` after reading every token: each must be below the vocabulary
 * size and their bytes must hash to the header's SHA-256. Throws TokenShardError otherwise.
 */
export async function verifyTokenShard(path: string): Promise<TokenShardInfo> {
  return withHeader(path, async (handle, { info, headerBytes }) => {
    const hash = createHash('sha256');
    const total = info.tokens * info.tokenBytes;
    const chunk = alignedBytes(Math.min(VERIFY_CHUNK_BYTES, Math.max(total, info.tokenBytes)));
    for (let done = 0; done < total; ) {
      const bytes = chunk.subarray(0, Math.min(chunk.length, total - done));
      await readFullyAt(handle, bytes, headerBytes + done, endOfTokens(path));
      hash.update(bytes);
      const values = info.tokenBytes === 2 ? new Uint16Array(bytes.buffer, 0, bytes.length / 2) : new Uint32Array(bytes.buffer, 0, bytes.length / 4);
      for (let i = 0; i < values.length; i++) {
        let value = values[i]!;
        if (!LITTLE_ENDIAN) value = info.tokenBytes === 2 ? bytes.readUInt16LE(i * 2) : bytes.readUInt32LE(i * 4);
        if (value >= info.vocabSize) {
          throw new TokenShardError(path, 'tokens', `token ${done / info.tokenBytes + i} is ${value}, not below the vocabulary size ${info.vocabSize}`);
        }
      }
      done += bytes.length;
    }
    const actual = hash.digest('hex');
    if (actual !== info.sha256) {
      throw new TokenShardError(path, 'sha256', `checksum mismatch: the header says ${info.sha256} but the tokens hash to ${actual} (the file is corrupt)`);
    }
    return info;
  });
}

/**
 * Opens the shard at `path` for positional reads (its header checked, not its checksum), or reads
 * its tokens into memory first (`preload`).
 */
export async function openTokenShard(path: string, options: OpenTokenShardOptions = {}): Promise<TokenShardReader> {
  const handle = await openShardFile(path);
  let header: ShardHeader;
  let tokens: Int32Array | null = null;
  try {
    header = await readHeader(path, handle, await shardFileBytes(path, handle));
    if (options.preload === true) {
      const bytes = alignedBytes(header.info.tokens * header.info.tokenBytes);
      await readFullyAt(handle, bytes, header.headerBytes, endOfTokens(path));
      tokens = decodeTokens(bytes, header.info.tokenBytes);
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  const { info, headerBytes } = header;
  const preloaded = tokens !== null;
  if (preloaded) await handle.close();
  let closed = false;
  const checkRange = (start: number, count: number) => {
    if (closed) throw new Error(`${path}: the shard reader is closed`);
    if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`start must be a non-negative integer (got ${String(start)})`);
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer (got ${String(count)})`);
    if (start + count > info.tokens) {
      throw new RangeError(`tokens [${start}, ${start + count}) are past the end of ${path} (${info.tokens} tokens)`);
    }
  };
  return {
    info,
    preloaded,
    view(start: number, count: number): Int32Array {
      checkRange(start, count);
      if (tokens === null) throw new RangeError(`${path}: view() needs a preloaded reader (openTokenShard(path, { preload: true }))`);
      return tokens.subarray(start, start + count);
    },
    async read(start: number, count: number): Promise<Int32Array> {
      checkRange(start, count);
      if (tokens !== null) return tokens.slice(start, start + count);
      const bytes = alignedBytes(count * info.tokenBytes);
      await readFullyAt(handle, bytes, headerBytes + start * info.tokenBytes, endOfTokens(path));
      return decodeTokens(bytes, info.tokenBytes);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      tokens = null;
      if (!preloaded) await handle.close();
    },
  };
}
