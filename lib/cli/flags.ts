/** Parsing of command-line flag values shared by the commands: numbers, and config overrides. */
import { ConfigError, setByPath } from '../sae/train-config.js';

/** A flag's value as a positive integer; a RangeError naming the flag otherwise. */
export function positiveIntegerFlag(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${flag} must be a positive integer (got ${JSON.stringify(text)})`);
  return value;
}

/** A flag's value as a non-negative integer; a RangeError naming the flag otherwise. */
export function nonNegativeIntegerFlag(flag: string, text: string): number {
  const value = text.trim() === '' ? NaN : Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${flag} must be a non-negative integer (got ${JSON.stringify(text)})`);
  return value;
}

/** A flag's value as a finite number; a RangeError naming the flag otherwise. */
export function numberFlag(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value)) throw new RangeError(`${flag} must be a number (got ${JSON.stringify(text)})`);
  return value;
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
export function applySetFlags(doc: Record<string, unknown>, assignments: readonly string[], example: string): void {
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new ConfigError([`--set ${assignment}: expected KEY=VALUE, e.g. ${example}`]);
    setByPath(doc, assignment.slice(0, eq), parseValue(assignment.slice(eq + 1)));
  }
}
