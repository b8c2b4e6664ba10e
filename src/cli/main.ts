#!/usr/bin/env node
import { runCli } from './run.js';

// A reader that stops reading (`| head -1`) is not the command's failure: the rest of the output is
// dropped and the command finishes as it would have, closing the database (Node would otherwise
// print an EPIPE stack trace and exit 1 mid-command).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
});

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  cwd: process.cwd(),
});
