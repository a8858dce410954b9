/**
 * A live progress line for long loops such as training. On a terminal it is a cli-progress bar
 * redrawn in place; elsewhere (CI, log files) redrawing makes no sense, so it prints a plain line
 * every twentieth of the work or every 30 s. The ETA comes from the rate over the last 30 s,
 * counted from where this process started so a resumed run's rate is not inflated.
 */
import { SingleBar } from 'cli-progress';

export interface ProgressOptions {
  /** The count at which the work is done (e.g. steps). */
  total: number;
  /** Shown at the start of the line, e.g. 'train'. */
  label?: string;
  /** Where to write. Default: process.stderr. */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Whether to show progress at all. Default: whether the stream is a TTY. log() prints either way. */
  enabled?: boolean;
  /** The count already done when this process starts (a resumed run). Default 0. */
  initial?: number;
  /** What is counted, after the counts: '4500/10000 steps'. Default 'steps'. */
  unit?: string;
}

export interface Progress {
  /**
   * done: the count so far. fields: shown after the counts, in their order; a name ending in
   * '/s' is a rate and reads '1.2k samples/s', any other reads 'loss 0.123'.
   */
  update(done: number, fields?: Record<string, string | number>): void;
  /** Prints a line (a message, not progress) above the bar. */
  log(line: string): void;
  /**
   * Draws the final state and releases the line; later updates are ignored. Call it in a finally:
   * on a terminal the bar's redraw timer keeps the process alive until then.
   */
  stop(): void;
}

/** The ETA's rate is measured over this much recent time. */
const RATE_WINDOW_MS = 30_000;
/** Rate samples closer together than this replace each other, bounding the window's size. */
const RATE_SAMPLE_GAP_MS = 250;
/** No ETA until the window spans this long (the first steps are too few to time). */
const RATE_MIN_SPAN_MS = 500;
/** Without a TTY, print at least this often. */
const PLAIN_INTERVAL_MS = 30_000;
const BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 10;

export function createProgress(options: ProgressOptions): Progress {
  const { total, label = '', initial = 0, unit = 'steps' } = options;
  if (typeof total !== 'number' || !Number.isInteger(total) || total < 0) {
    throw new RangeError(`createProgress: total must be a non-negative integer (got ${String(total)})`);
  }
  if (typeof initial !== 'number' || !Number.isFinite(initial) || initial < 0) {
    throw new RangeError(`createProgress: initial must be a finite non-negative number (got ${String(initial)})`);
  }
  const stream = options.stream ?? process.stderr;
  const isTTY = 'isTTY' in stream && stream.isTTY === true;
  const enabled = options.enabled ?? isTTY;
  const state = new ProgressState(total, label, unit, initial, Date.now());
  if (!enabled) return new SilentProgress(stream);
  return isTTY ? new BarProgress(stream, state) : new PlainProgress(stream, state);
}

/**
 * The progress of an analysis pass over `contexts` contexts (features, browse, eval, automata,
 * compare): on stderr when it is a terminal, unless `flag` (--no-progress) is false.
 */
export function contextProgress(label: string, contexts: number, flag: boolean | undefined): Progress {
  return createProgress({ total: contexts, label, unit: 'contexts', stream: process.stderr, enabled: flag !== false && process.stderr.isTTY === true });
}

/** The latest count and fields, and the recent rate they imply. */
class ProgressState {
  done: number;
  fields: Record<string, string | number> = {};
  private readonly startTime: number;
  /** (time, done) samples covering the last RATE_WINDOW_MS, oldest first. */
  private samples: { time: number; done: number }[];

  constructor(
    readonly total: number,
    readonly label: string,
    readonly unit: string,
    initial: number,
    now: number,
  ) {
    this.done = initial;
    this.startTime = now;
    this.samples = [{ time: now, done: initial }];
  }

  set(done: number, fields: Record<string, string | number> | undefined, now: number): void {
    if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) {
      throw new RangeError(`Progress.update: done must be a finite non-negative number (got ${String(done)})`);
    }
    this.done = done;
    if (fields !== undefined) this.fields = fields;
    const last = this.samples[this.samples.length - 1]!;
    if (done < last.done) {
      this.samples = [{ time: now, done }]; // the count went back: time it afresh
      return;
    }
    const beforeLast = this.samples[this.samples.length - 2];
    if (beforeLast !== undefined && now - beforeLast.time < RATE_SAMPLE_GAP_MS) {
      this.samples[this.samples.length - 1] = { time: now, done };
    } else {
      this.samples.push({ time: now, done });
    }
    // Keep one sample at or beyond the window's start so the window spans it fully.
    while (this.samples.length > 2 && this.samples[1]!.time <= now - RATE_WINDOW_MS) this.samples.shift();
  }

  /** Units per second over the recent window; undefined until there is enough to time. */
  rate(): number | undefined {
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const span = last.time - first.time;
    if (span < RATE_MIN_SPAN_MS || last.done <= first.done) return undefined;
    return ((last.done - first.done) * 1000) / span;
  }

  /** 'ETA 3m12s' while running; 'elapsed 5m03s' once done. */
  timing(now: number): string {
    if (this.done >= this.total) return `elapsed ${formatDuration((now - this.startTime) / 1000)}`;
    const rate = this.rate();
    return `ETA ${rate === undefined ? '--' : formatDuration((this.total - this.done) / rate)}`;
  }

  /** '45% 4500/10000 steps'. */
  counts(): string {
    return `${Math.floor(this.fraction() * 100)}% ${this.done}/${this.total} ${this.unit}`;
  }

  /** The parts after the counts: rate fields, the ETA, then the other fields. */
  details(now: number): string {
    const rates: string[] = [];
    const others: string[] = [];
    for (const [name, value] of Object.entries(this.fields)) {
      if (name.endsWith('/s')) rates.push(`${typeof value === 'number' ? formatRate(value) : value} ${name}`);
      else others.push(`${name} ${typeof value === 'number' ? formatCompact(value) : value}`);
    }
    return [...rates, this.timing(now), ...others].join(' | ');
  }

  fraction(): number {
    return this.total > 0 ? Math.max(0, Math.min(1, this.done / this.total)) : 1;
  }
}

/** Progress display turned off: only log() prints. */
class SilentProgress implements Progress {
  constructor(private readonly stream: NodeJS.WritableStream) {}
  update(): void {}
  log(line: string): void {
    this.stream.write(line + '\n');
  }
  stop(): void {}
}

/** A plain line now and then, with no escape codes. */
class PlainProgress implements Progress {
  private readonly every: number;
  private lastPrintedDone: number;
  private lastPrintTime: number;
  private latestPrinted = true;
  private stopped = false;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly state: ProgressState,
  ) {
    this.every = Math.max(1, Math.floor(state.total / 20));
    this.lastPrintedDone = state.done;
    this.lastPrintTime = Date.now();
  }

  update(done: number, fields?: Record<string, string | number>): void {
    if (this.stopped) return;
    const now = Date.now();
    this.state.set(done, fields, now);
    this.latestPrinted = false;
    const crossedStep = Math.floor(done / this.every) > Math.floor(this.lastPrintedDone / this.every);
    const finished = done >= this.state.total && this.lastPrintedDone < this.state.total;
    if (crossedStep || finished || now - this.lastPrintTime >= PLAIN_INTERVAL_MS) this.print(now);
  }

  log(line: string): void {
    this.stream.write(line + '\n');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (!this.latestPrinted) this.print(Date.now());
  }

  private print(now: number): void {
    const { state } = this;
    const head = state.label === '' ? state.counts() : `${state.label} ${state.counts()}`;
    this.stream.write(`${head} | ${state.details(now)}\n`);
    this.lastPrintedDone = state.done;
    this.lastPrintTime = now;
    this.latestPrinted = true;
  }
}

/** A cli-progress bar redrawn in place on a terminal. */
class BarProgress implements Progress {
  private readonly bar: SingleBar;
  private stopped = false;
  /** The terminal width the bar was last fitted to, and the bar's width in cells. */
  private columns = 0;
  private barWidth = BAR_WIDTH;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly state: ProgressState,
  ) {
    this.bar = new SingleBar({
      stream,
      format: () => this.line(),
      fps: 10,
      linewrap: true,
      hideCursor: false,
      gracefulExit: false,
    });
    this.bar.start(state.total, state.done);
  }

  update(done: number, fields?: Record<string, string | number>): void {
    if (this.stopped) return;
    this.state.set(done, fields, Date.now());
    this.bar.update(done);
  }

  log(line: string): void {
    if (this.stopped) {
      this.stream.write(line + '\n');
      return;
    }
    // Clear the bar's line, print the message, save the cursor where the bar now starts (the bar
    // restores that position when it stops) and draw the bar again below the message.
    this.stream.write(`\r\x1b[2K${line}\n\x1b7${this.line()}`);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar.stop();
  }

  /** The whole bar line; the bar narrows (down to MIN_BAR_WIDTH cells) to fit the terminal, then the line is cut. */
  private line(): string {
    const { state } = this;
    const columns = 'columns' in this.stream && typeof this.stream.columns === 'number' && this.stream.columns > 0 ? this.stream.columns : 80;
    const head = state.label === '' ? '' : `${state.label} `;
    const tail = `${state.counts()} | ${state.details(Date.now())}`;
    if (columns !== this.columns) {
      this.columns = columns;
      this.barWidth = BAR_WIDTH;
    }
    // Narrow only, so the bar does not change width as the numbers after it do.
    this.barWidth = Math.max(MIN_BAR_WIDTH, Math.min(this.barWidth, columns - head.length - tail.length - 3));
    const filled = Math.round(state.fraction() * this.barWidth);
    const bar = '█'.repeat(filled) + '░'.repeat(this.barWidth - filled);
    return `${head}|${bar}| ${tail}`.slice(0, columns);
  }
}

/** 4 significant digits: 0.1235, 12.35, 12350; exponent form below 1e-3 and from 1e6. */
export function formatCompact(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e6) return String(Number(value.toPrecision(4)));
  return value.toExponential(3).replace(/\.?0+e/, 'e').replace('e+', 'e');
}

/** A rate with 4 significant digits and a k, M or G suffix: 950, 1.2k, 3.456M. */
export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const rounded = Number(value.toPrecision(4));
  const magnitude = Math.abs(rounded);
  if (magnitude < 1e3) return formatCompact(rounded);
  if (magnitude < 1e6) return `${formatCompact(rounded / 1e3)}k`;
  if (magnitude < 1e9) return `${formatCompact(rounded / 1e6)}M`;
  return `${formatCompact(rounded / 1e9)}G`;
}

/** 45s, 3m12s, 2h05m, 3d04h; '--' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const whole = Math.round(seconds);
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${pad(whole % 60)}s`;
  if (whole < 86_400) return `${Math.floor(whole / 3600)}h${pad(Math.floor((whole % 3600) / 60))}m`;
  return `${Math.floor(whole / 86_400)}d${pad(Math.floor((whole % 86_400) / 3600))}h`;
}
