import fs from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cgroupCpuQuota, usableCpus } from '../src/cpus.js';
import { tempDir } from './helpers.js';

/** A folder standing for `/`, holding the given files. */
function fakeRoot(files: Record<string, string>): string {
  const root = tempDir();
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(root, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  }
  return root;
}

describe('CPUs this process may use (the default of WORKERS)', () => {
  it('a cgroup v2 container limited to 1.5 CPUs: 1.5, so one worker, whatever the host has', () => {
    const root = fakeRoot({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': '150000 100000\n' });
    expect(cgroupCpuQuota(root)).toBe(1.5);
    expect(usableCpus(root)).toBe(1);
  });

  it('cgroup v2 with no limit ("max"), or no cgroup files at all: the cores', () => {
    const unlimited = fakeRoot({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': 'max 100000\n' });
    expect(cgroupCpuQuota(unlimited)).toBeUndefined();
    expect(usableCpus(unlimited)).toBe(availableParallelism());
    expect(cgroupCpuQuota(tempDir())).toBeUndefined();
  });

  it('a systemd service under a slice: the smallest quota on its path counts, and never less than one CPU', () => {
    const root = fakeRoot({
      'proc/self/cgroup': '0::/system.slice/tokenmint.service\n',
      'sys/fs/cgroup/system.slice/tokenmint.service/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/system.slice/cpu.max': '50000 100000\n',
    });
    expect(cgroupCpuQuota(root)).toBe(0.5);
    expect(usableCpus(root)).toBe(1);
  });

  it('cgroup v1 (cpu,cpuacct mounted as one, as Docker shows it): quota ÷ period; -1 is none', () => {
    const limited = fakeRoot({
      'proc/self/cgroup': '4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '300000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuQuota(limited)).toBe(3);
    expect(usableCpus(limited)).toBe(Math.min(availableParallelism(), 3));
    const none = fakeRoot({
      'proc/self/cgroup': '1:cpu:/\n2:cpuacct:/\n',
      'sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuQuota(none)).toBeUndefined();
  });
});
