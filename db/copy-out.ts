import type { Readable } from 'node:stream'

/** The signature that opens PostgreSQL's binary COPY format. */
export const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

/**
 * Throws the error of a COPY stream that failed before its reader could listen (a COPY that
 * fails as it starts: the driver destroys the stream before the promise that gives it to the
 * caller settles; the install-time guard copy-out-error in scripts/patch-postgres-driver.mjs
 * keeps the error in stream.errored instead of throwing it). Call it first thing on the stream.
 */
export function throwIfCopyFailed (stream: Readable): void {
  if (!stream.destroyed) return
  throw stream.errored ?? new Error('the COPY stream was closed before it was read')
}

/**
 * Everything a COPY ... TO STDOUT sends. (The connection goes on after the COPY whatever its
 * reader does: guard copy-out-resume in scripts/patch-postgres-driver.mjs.)
 */
export async function readCopyOut (stream: Readable): Promise<Buffer> {
  throwIfCopyFailed(stream)
  const chunks: Buffer[] = []
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    stream.once('end', () => { resolve() })
    stream.once('error', reject)
  })
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}

/**
 * The one field of the one row of a binary COPY (COPY (SELECT <one bytea>) TO STDOUT (FORMAT
 * binary)): its bytes as they are stored, with none of the text format's hex encoding (twice the
 * bytes, then decoded again in the service). Null when the field is NULL or there is no row.
 */
export function oneBinaryField (data: Buffer): Buffer | null {
  if (data.length < 21 || !data.subarray(0, 11).equals(COPY_SIGNATURE)) throw new Error('binary COPY: bad signature')
  let o = 15 + 4 + data.readUInt32BE(15)
  const fields = data.readInt16BE(o)
  o += 2
  if (fields === -1) return null
  if (fields !== 1) throw new Error(`binary COPY: ${fields} fields where one was expected`)
  const length = data.readInt32BE(o)
  o += 4
  if (length === -1) return null
  if (o + length + 2 !== data.length || data.readInt16BE(o + length) !== -1) throw new Error('binary COPY: more than one row, or a truncated one')
  return data.subarray(o, o + length)
}
