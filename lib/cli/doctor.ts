/** `monosemantic doctor [--json]`. */
import type { Command } from 'commander';

import { type DoctorReport, doctorFailure, doctorReport, formatDoctorReport } from '../doctor.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('show the CPU, the CUDA backend and GPUs found, and why CUDA is not in use when it is not')
    .option('--json', 'print the report as JSON')
    .action((options: { json?: boolean }) => {
      let report: DoctorReport;
      try {
        report = doctorReport();
      } catch (error) {
        if (!options.json) throw error; // the message, as every command gives it
        // The addon did not load: scripts still get JSON, with the error as the backend's.
        console.log(JSON.stringify(doctorFailure(error), null, 2));
        process.exitCode = 1;
        return;
      }
      console.log(options.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
      // The whole report is printed either way; the status says that no backend can be used.
      if (report.backend.active === null) process.exitCode = 1;
    });
}
