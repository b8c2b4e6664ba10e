import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { onCleanup } from './helpers.js';

const serverEntry = path.resolve('dist/server.js');
const cliEntry = path.resolve('dist/cli/main.js');

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Sends `signal` and resolves to the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Starts the built server (`npm start` without the build) on a free port and waits until it listens. */
export function startServer(env: NodeJS.ProcessEnv, cwd: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [serverEntry], { cwd, env: { PATH: process.env.PATH, ...env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  onCleanup(() => stop('SIGKILL'));
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const match = /listening on (http:\/\/\S+)/.exec(err);
      if (match) resolve({ url: match[1]!, child, stdout: () => out, stderr: () => err, stop });
    });
    void exited.then((code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
}

/** Runs the built CLI as its own process; resolves to its parsed --json output. */
export async function cliProcess(env: NodeJS.ProcessEnv, cwd: string, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, [cliEntry, ...args, '--json'], { cwd, env: { PATH: process.env.PATH, ...env } });
  return JSON.parse(stdout) as Record<string, unknown>;
}
