/** `monosemantic doctor [--json]`. */
import type { Command } from 'commander';

import { doctorReport, formatDoctorReport } from '../doctor.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('show the CPU, the CUDA backend and GPUs found, and why CUDA is not in use when it is not')
    .option('--json', 'print the report as JSON')
    .action((options: { json?: boolean }) => {
      const report = doctorReport();
      console.log(options.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
      // The whole report is printed either way; the status says that no backend can be used.
      if (report.backend.active === null) process.exitCode = 1;
    });
}
