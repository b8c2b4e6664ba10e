import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { onCleanup } from './helpers.js';

export const serverEntry = path.resolve('dist/server.js');
const cliEntry = path.resolve('dist/cli/main.js');

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Sends `signal` and resolves to the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Spawns `node <entry>` and resolves once one of its output streams prints a line matching `ready`
 * (its first group is the URL); stopped (SIGKILL) after the test if still running.
 */
export function startProcess(entry: string, options: { env: NodeJS.ProcessEnv; cwd?: string; ready: RegExp; on: 'stdout' | 'stderr' }): Promise<ServerProcess> {
  const child = spawn(process.execPath, [entry], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  // Its last output may still be in the pipes at 'exit': wait for them to close ('close'), or 2 s
  // when a process it left behind (a cluster worker) holds them.
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      child.once('close', () => resolve(code));
      setTimeout(() => resolve(code), 2000).unref();
    }),
  );
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  onCleanup(() => stop('SIGKILL'));
  return new Promise((resolve, reject) => {
    for (const name of ['stdout', 'stderr'] as const) {
      child[name]!.on('data', (d) => {
        output[name] += d;
        const match = name === options.on ? options.ready.exec(output[name]) : null;
        if (match) resolve({ url: match[1]!, child, stdout: () => output.stdout, stderr: () => output.stderr, stop });
      });
    }
    void exited.then((code) => reject(new Error(`${entry} exited with ${code}: ${output.stderr}`)));
  });
}

/** Starts the built server (`npm start` without the build) on a free port and waits until it listens. */
export function startServer(env: NodeJS.ProcessEnv, cwd: string): Promise<ServerProcess> {
  return startProcess(serverEntry, { env: { PATH: process.env.PATH, ...env, PORT: '0' }, cwd, ready: /listening on (https?:\/\/\S+)/, on: 'stderr' });
}

/** Runs the built CLI as its own process; resolves to its parsed --json output. */
export async function cliProcess(env: NodeJS.ProcessEnv, cwd: string, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, [cliEntry, ...args, '--json'], { cwd, env: { PATH: process.env.PATH, ...env } });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** The pids of `pid`'s child processes, from /proc (no ps or pgrep needed). */
export function childPids(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        // stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after its closing parenthesis.
        const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Resolves once `condition` holds, looking every 100 ms; throws after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
