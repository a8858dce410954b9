/**
 * SIGINT / SIGTERM for long runs: the first signal aborts the returned signal (the run writes a
 * checkpoint and stops after its current step); a second exits at once.
 */
export async function withInterrupts<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: string) => {
    signals += 1;
    if (signals > 1) process.exit(130);
    process.stderr.write(`\n${name}: saving a checkpoint, then stopping (press again to quit at once)\n`);
    controller.abort();
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  try {
    return await run(controller.signal);
  } finally {
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}
