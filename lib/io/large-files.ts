/**
 * Whole-file reads and SHA-256 digests that work past 2 GiB. Node refuses both in one call:
 * fs.readFile throws ERR_FS_FILE_TOO_LARGE for files of 2 GiB or more, one FileHandle.read moves at
 * most 2^31 − 1 bytes, and Hash.update throws ERR_OUT_OF_RANGE ("data is too long") for 2 GiB or
 * more. An SAE's optimizer state reaches 2 GiB at d_in · d_sae = 2^27 (3,072 × 43,691), a token
 * shard at 2^30 16-bit tokens, an activation-cache shard at --shard-rows × d × 4 = 2 GiB.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:buffer';
import { type FileHandle, open } from 'node:fs/promises';

/** Bytes per Hash.update() and per positional read (below Node's 2^31 − 1 limits). */
export const LARGE_IO_CHUNK_BYTES = 1 << 30;

/**
 * Fills `into` from `handle`, starting at byte `position` of the file, `chunkBytes` per read (one
 * FileHandle.read of 2^31 bytes or more aborts Node.js 20). Where the file ends first, throws
 * `atEnd(byte)`, given the byte of the file it stopped at.
 */
export async function readFullyAt(handle: FileHandle, into: Uint8Array, position: number, atEnd: (byte: number) => Error, chunkBytes = LARGE_IO_CHUNK_BYTES): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, Math.min(chunkBytes, into.length - done), position + done);
    if (bytesRead === 0) throw atEnd(position + done);
    done += bytesRead;
  }
}

/** The SHA-256 digest of `data`, fed to the hash `chunkBytes` at a time. */
export function sha256Digest(data: Uint8Array, chunkBytes = LARGE_IO_CHUNK_BYTES): Buffer {
  const hash = createHash('sha256');
  for (let at = 0; at < data.length; at += chunkBytes) hash.update(data.subarray(at, Math.min(data.length, at + chunkBytes)));
  return hash.digest();
}

/** sha256Digest as lowercase hex. */
export function sha256Hex(data: Uint8Array, chunkBytes = LARGE_IO_CHUNK_BYTES): string {
  return sha256Digest(data, chunkBytes).toString('hex');
}

/**
 * The whole file in one Buffer, read `chunkBytes` at a time (fs.readFile stops at 2 GiB). Errors of
 * opening or reading are thrown as they are (ENOENT stays ENOENT); a file larger than the largest
 * Buffer this Node.js can make is a RangeError saying so.
 */
export async function readWholeFile(filePath: string, chunkBytes = LARGE_IO_CHUNK_BYTES): Promise<Buffer> {
  const handle = await open(filePath, 'r');
  try {
    const { size } = await handle.stat();
    if (size > constants.MAX_LENGTH) {
      throw new RangeError(`${filePath} is ${size} bytes, more than the largest buffer this Node.js can hold (${constants.MAX_LENGTH} bytes)`);
    }
    const out = Buffer.allocUnsafe(size);
    await readFullyAt(handle, out, 0, (byte) => new RangeError(`${filePath}: unexpected end of file at byte ${byte} of ${size} (changed while being read?)`), chunkBytes);
    return out;
  } finally {
    await handle.close();
  }
}
