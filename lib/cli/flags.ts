/** Parsing of command-line flag values shared by the commands: numbers, output paths, options with defaults, and config overrides. */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';

import { Option } from 'commander';

import { makeFolder } from '../io/folders.js';
import { ConfigError, setByPath } from '../sae/train-config.js';

/**
 * An option whose default --help shows once, as `shown` (default: the value itself, unquoted).
 * A default given to .option() is shown JSON-quoted ("256") after any default the description
 * already names.
 */
export function optionWithDefault(flags: string, description: string, value: string, shown = value): Option {
  return new Option(flags, description).default(value, shown);
}

/**
 * A flag's value as a number that passes `ok` (a blank value is not 0); otherwise a RangeError
 * naming the flag: "`flag` must be `what` (got "text")".
 */
function checkedFlag(flag: string, text: string, ok: (value: number) => boolean, what: string): number {
  const value = text.trim() === '' ? NaN : Number(text);
  if (!ok(value)) throw new RangeError(`${flag} must be ${what} (got ${JSON.stringify(text)})`);
  return value;
}

/** A flag's text value, refused when empty (a flag given as '' would otherwise fall back to its default). */
export function nonEmptyFlag(flag: string, text: string): string {
  if (text.trim() === '') throw new RangeError(`${flag} must not be empty`);
  return text;
}

/** A flag's value as a positive integer; a RangeError naming the flag otherwise. */
export function positiveIntegerFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, (v) => Number.isSafeInteger(v) && v >= 1, 'a positive integer');
}

/** A flag's value as a non-negative integer; a RangeError naming the flag otherwise. */
export function nonNegativeIntegerFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer');
}

/** A flag's value as an integer; a RangeError naming the flag otherwise. */
export function integerFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, Number.isSafeInteger, 'an integer');
}

/** A flag's value as a finite number >= 0; a RangeError naming the flag otherwise. */
export function nonNegativeNumberFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, (v) => Number.isFinite(v) && v >= 0, 'a non-negative number');
}

/** A flag's value as a number in (0, 1] (a probability mass, a fraction); a RangeError naming the flag otherwise. */
export function fractionFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, (v) => v > 0 && v <= 1, 'a number in (0, 1]');
}

/**
 * Readies the folder of the output file `file` named by `flag`, before any work is done: creates
 * it when missing, and refuses in one line (a RangeError) when it cannot be made or written, or
 * when `file` is itself a folder.
 */
export async function prepareOutputFile(flag: string, file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  try {
    await makeFolder(dir);
    await access(dir, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file stands where a folder is needed' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (error as Error).message;
    throw new RangeError(`${flag} ${file}: cannot write in ${dir} (${why})`);
  }
  if ((await stat(file).catch(() => null))?.isDirectory()) throw new RangeError(`${flag} ${file}: is a folder; name a file`);
}

/** A flag's value as a finite number; a RangeError naming the flag otherwise. */
export function numberFlag(flag: string, text: string): number {
  return checkedFlag(flag, text, Number.isFinite, 'a number');
}

/** A config value given on the command line: JSON when it parses, else the text itself. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Applies `--set KEY=VALUE` overrides to a config document; `example` shows the form in the error. */
export function applySetFlags(doc: Record<string, unknown>, assignments: readonly string[] | undefined, example: string): void {
  for (const assignment of assignments ?? []) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new ConfigError([`--set ${assignment}: expected KEY=VALUE, e.g. ${example}`]);
    setByPath(doc, assignment.slice(0, eq), parseValue(assignment.slice(eq + 1)));
  }
}
