// Loaded into a server with NODE_OPTIONS="--import <this file>" (resilience.test.ts). In each cluster
// worker it starts a process that holds the worker's channel to the primary (fd 3) open until a second
// after the worker has exited, so that the primary sees each worker exit before its channel closes:
// an order Node allows, and one the primary once mistook for a worker still running.
import { spawn } from 'node:child_process';
import cluster from 'node:cluster';

const holdUntilGone = 'const t = setInterval(() => { try { process.kill(+process.argv[1], 0) } catch { clearInterval(t); setTimeout(() => {}, 1000) } }, 50)';
if (cluster.isWorker) {
  spawn(process.execPath, ['-e', holdUntilGone, String(process.pid)], { stdio: ['ignore', 'ignore', 'ignore', 3], env: {} }).unref();
}
