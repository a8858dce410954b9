/** The GPT-2 forward pass on the CPU backend against HF transformers fixtures (test/helpers/gpt2-suite.ts). */
import { describe } from 'vitest';

import { defineGpt2FixtureTests } from '../helpers/gpt2-suite.js';

describe('cpu', () => defineGpt2FixtureTests('cpu'));
