import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/**
 * How the service is started, as `npm start` and the Dockerfile's CMD start it (a test checks
 * they agree). --initial-old-space-size keeps V8's old-generation limit from being set just
 * above a small live heap: with ~28 MB live, a 1M-row training set otherwise ran a full
 * collection every 100-200 ms (~20 per request, its marking thread taking a core from
 * PostgreSQL); see the README's design decisions.
 */
export const SERVICE_NODE_ARGS = ['--initial-old-space-size=128', '--import', 'tsx', 'src/server.ts']

/**
 * The environment `npm start` and the Dockerfile set for the service (a test checks they
 * agree): glibc's malloc backs its large blocks with transparent huge pages where the kernel
 * allows them on request (THP "madvise"; ignored elsewhere). A 1M-row training set's body and
 * blocks are ~100 MiB of fresh Buffers and typed arrays, i.e. ~25,000 page faults of 4 KiB; on a
 * virtual machine where a fault costs ~11 us (measured here) that was ~0.2-0.6 s of CPU per
 * request. See the README's design decisions.
 */
export const SERVICE_ENV: Readonly<Record<string, string>> = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }

export interface ServerProcess {
  child: ChildProcess
  port: number
  /** Every log line the server printed (JSON). */
  logs: string[]
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * Spawns the real server (`node` with SERVICE_NODE_ARGS) and waits until it listens. Like
 * the in-process test app, it runs without load shedding unless `env` sets it: on a busy test
 * machine a freshly started server lags for a second or more, and under-pressure would answer
 * its first requests 503 (seen failing the SIGKILL test), which is not what these tests check.
 */
export async function spawnServer (env: Record<string, string>, timeoutMs = 90_000): Promise<ServerProcess> {
  // the test runner's own instrumentation (NODE_OPTIONS, TAP_*) stays out: it handles signals itself
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/^(TAP|_TAPJS)/.test(k)))
  const child = spawn(process.execPath, SERVICE_NODE_ARGS, {
    cwd: REPO_ROOT,
    env: { ...inherited, ...SERVICE_ENV, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', PRESSURE_MAX_HEAP_USED_BYTES: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: string[] = []
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen within ${timeoutMs} ms:\n${logs.join('\n')}`)), timeoutMs)
    let buffered = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        logs.push(line)
        const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
        if (m) { clearTimeout(timer); resolve(Number(m[1])) }
      }
    })
    child.stderr!.on('data', (chunk: Buffer) => { logs.push(chunk.toString('utf8')) })
    void exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`server exited (${code ?? signal}) before listening:\n${logs.join('\n')}`)) })
  })
  return { child, port, logs, exited }
}
