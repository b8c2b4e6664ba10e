import fs from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';

/**
 * How many CPUs this process can keep busy: the cores it may run on, within a cgroup CPU limit (a
 * container's `--cpus`, a Kubernetes CPU limit, systemd's `CPUQuota=`) rounded down, at least 1.
 * Node 20's availableParallelism() counts the cores only (its libuv, 1.46, reads no quota), so in a
 * container limited to 2 CPUs on a 64-core host it says 64.
 */
export function usableCpus(root = '/'): number {
  const cores = availableParallelism();
  const quota = cgroupCpuQuota(root);
  return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.floor(quota)));
}

/**
 * The CPU quota of this process's cgroup in CPUs (quota ÷ period), the smallest along its path up to
 * the root; undefined when there is none. cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us`). `root`
 * is for tests: the folder that stands for `/`.
 */
export function cgroupCpuQuota(root = '/'): number | undefined {
  const quotas: number[] = [];
  for (const line of readText(path.join(root, 'proc/self/cgroup'))?.split('\n') ?? []) {
    const match = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!match) continue;
    const [, controllers, own] = match as unknown as [string, string, string];
    for (const dir of selfAndAncestors(own)) {
      if (controllers === '') {
        // v2: "max 100000" (none) or "200000 100000"
        const [quota, period] = readText(path.join(root, 'sys/fs/cgroup', dir, 'cpu.max'))?.trim().split(' ') ?? [];
        if (quota !== undefined && quota !== 'max') quotas.push(Number(quota) / Number(period));
      } else if (controllers.split(',').includes('cpu')) {
        // v1: a quota of -1 is none. Mounted at cpu or at the joined controllers' name (cpu,cpuacct).
        for (const mount of new Set(['cpu', controllers])) {
          const quota = Number(readText(path.join(root, 'sys/fs/cgroup', mount, dir, 'cpu.cfs_quota_us')));
          const period = Number(readText(path.join(root, 'sys/fs/cgroup', mount, dir, 'cpu.cfs_period_us')));
          if (quota > 0 && period > 0) quotas.push(quota / period);
        }
      }
    }
  }
  const valid = quotas.filter((q) => Number.isFinite(q) && q > 0);
  return valid.length === 0 ? undefined : Math.min(...valid);
}

/** "/a/b" → "/a/b", "/a", "/": a limit set on a parent cgroup binds its children too. */
function selfAndAncestors(own: string): string[] {
  const dirs = [own];
  while (dirs.at(-1) !== '/') dirs.push(path.posix.dirname(dirs.at(-1)!));
  return dirs;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
