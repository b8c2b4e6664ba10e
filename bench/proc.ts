import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** The process and all its descendants (cluster workers). */
function tree(pid: number): number[] {
  const children = fs.readdirSync(`/proc/${pid}/task`).flatMap((task) => {
    try {
      return fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  return [pid, ...children.flatMap(tree)];
}

/** CPU seconds used so far by a process tree (user + system). */
export function cpuSeconds(pid: number): number {
  return tree(pid).reduce((sum, p) => {
    const fields = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return sum + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }, 0);
}

const statusMb = (pid: number, field: 'VmHWM' | 'VmRSS') => {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : 0;
};

/** Peak resident memory (VmHWM) of the largest process in the tree, in MB. */
export function peakRssMb(pid: number): number {
  return Math.max(...tree(pid).map((p) => statusMb(p, 'VmHWM')));
}

/** Resident memory (VmRSS) now of each process in the tree that serves (the cluster primary, which serves nothing, left out), in MB. */
export function rssMbNow(pid: number): number[] {
  const processes = tree(pid);
  return (processes.length > 1 ? processes.slice(1) : processes).map((p) => statusMb(p, 'VmRSS'));
}

export interface Server {
  child: ChildProcess;
  origin: string;
  stop(): Promise<void>;
}

/** Starts `node <entry>` and resolves once it prints `listening on http(s)://host:port`. */
export function startNode(entry: string, env: NodeJS.ProcessEnv, cwd: string): Promise<Server> {
  // BENCH_SERVER_NODE_ARGS, e.g. "--cpu-prof", to profile the servers under load.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, entry], { cwd, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const match = /listening on (https?:\/\/[\d.:]+)/.exec(err);
      if (match) {
        resolve({
          child,
          origin: match[1]!,
          stop: () =>
            new Promise((done) => {
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`${entry} exited with ${code}: ${err}`)));
  });
}
