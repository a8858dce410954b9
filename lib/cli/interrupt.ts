import { constants } from 'node:os';

type StopSignal = 'SIGINT' | 'SIGTERM';

/** 128 + the signal's number (130 for SIGINT, 143 for SIGTERM): the status shells give a command the signal stopped. */
function signalExitStatus(name: StopSignal): number {
  return 128 + constants.signals[name];
}

/**
 * SIGINT / SIGTERM for long runs: the first signal aborts the returned signal (the run writes a
 * checkpoint and stops after its current step; `stopping` says what it does); a second exits at once. Either way the exit status
 * is the signal's (130 for SIGINT), not 0, so that scripts can tell a stopped run from a finished
 * one: once `run` returns, the first signal's status becomes process.exitCode (even where the
 * signal came too late to stop it); a run that throws leaves the status to the error handling.
 */
export async function withInterrupts<T>(run: (signal: AbortSignal) => Promise<T>, stopping = 'saving a checkpoint, then stopping'): Promise<T> {
  const controller = new AbortController();
  let first: StopSignal | null = null;
  const onSignal = (name: StopSignal) => {
    if (first !== null) process.exit(signalExitStatus(name));
    first = name;
    process.stderr.write(`\n${name}: ${stopping} (press again to quit at once)\n`);
    controller.abort();
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  try {
    const result = await run(controller.signal);
    if (first !== null) process.exitCode = signalExitStatus(first);
    return result;
  } finally {
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}
