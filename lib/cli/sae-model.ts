/**
 * What the analysis commands share: the model an SAE is analysed with, and the context length.
 *
 * The model: `--model` when given; otherwise the model its cfg.json names
 * (metadata.model_name, the folder name of the model it was trained on): the package's `a` or
 * `b`, or model A when it names none. An SAE of any other model needs `--model`: running it on
 * model A would give numbers for the wrong model without a word.
 */
import path from 'node:path';

import { shippedModelDir } from '../lm/default-model.js';
import { positiveIntegerFlag } from './flags.js';

/** What the analysis commands' --model help says. */
export const SAE_MODEL_HELP = "model directory, or a / b: the package's models (default: the model the SAE's cfg.json names; a when it names none)";

/**
 * The model folder for the SAE at `saeDir` whose cfg.json names `modelName`. With `flag` given, a
 * folder of another name than `modelName` gets a note (an SAE of one model may be run on another
 * on purpose).
 */
export function saeModelDir(saeDir: string, modelName: string | null, flag: string | undefined, flagName = '--model', note: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): string {
  if (flag !== undefined) {
    if (modelName !== null && path.basename(path.resolve(flag)) !== modelName) {
      note(`note: ${saeDir} was trained on model '${modelName}' (its cfg.json model_name); running it on ${flagName} ${flag}`);
    }
    return flag;
  }
  if (modelName === null || modelName === 'a' || modelName === 'b') return shippedModelDir(modelName ?? 'a');
  throw new RangeError(`${saeDir} was trained on model '${modelName}' (its cfg.json model_name), which is not one of the package's (a, b): give its folder with ${flagName}`);
}

/**
 * Tokens per context for an analysis: --context-length when given (in [min, nPositions]), else
 * the SAE's context size capped at the model's positions. `min` is 2 (BOS and a token) where only
 * activations are read, 3 where next-token losses are (the first token is predicted from BOS).
 */
export function analysisContextLength(flag: string | undefined, saeContextSize: number | null, nPositions: number, min = 2): number {
  if (flag === undefined) return Math.min(saeContextSize ?? nPositions, nPositions);
  const value = positiveIntegerFlag('--context-length', flag);
  if (value < min || value > nPositions) throw new RangeError(`--context-length must be in [${min}, ${nPositions}], the model's n_positions (got ${value})`);
  return value;
}
