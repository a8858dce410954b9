/**
 * The GPT-2 forward pass on the CUDA backend against the same HF transformers fixtures as the CPU
 * (test/helpers/gpt2-suite.ts): logits within 1e-4 relative in fp32 and 2e-2 in bf16, the loss and
 * every hook, splicing and ablation, and KV-cache generation token for token. Skipped, with the
 * reason printed, where the CUDA backend is not available.
 */
import { describe } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { defineGpt2FixtureTests } from '../helpers/gpt2-suite.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

describe.skipIf(!hasCuda)('cuda', () => defineGpt2FixtureTests('cuda'));
