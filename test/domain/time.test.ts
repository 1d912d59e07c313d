import t from 'tap'
import fc from 'fast-check'
import { commonTimestampMs, parseTimestamp, parseTimestampByPattern, formatTimestamp, parseDuration, formatDuration } from '../../src/domain/time.js'
import { parseTimestampBytes } from '../../src/domain/training-body.js'

t.test('RFC 3339 with a zone or epoch milliseconds', async (t) => {
  t.same(parseTimestamp('2023-06-01T12:00:00Z'), { ok: true, ms: Date.UTC(2023, 5, 1, 12) })
  t.same(parseTimestamp('2023-06-01T14:00:00.250+02:00'), { ok: true, ms: Date.UTC(2023, 5, 1, 12, 0, 0, 250) })
  t.same(parseTimestamp(1685620800000), { ok: true, ms: 1685620800000 })
  t.same(parseTimestamp('1685620800000'), { ok: true, ms: 1685620800000 })
  t.same(parseTimestamp('2023-06-01T12:00:00.123000Z'), { ok: true, ms: Date.UTC(2023, 5, 1, 12, 0, 0, 123) }, 'zero digits past ms are fine')
})

t.test('rejections say why', async (t) => {
  const noZone = parseTimestamp('2023-06-01T12:00:00')
  t.equal(noZone.ok, false)
  t.match((noZone as { message: string }).message, /no time zone: add 'Z'/)
  t.match((parseTimestamp('2023-06-01T12:00:00.1234Z') as { message: string }).message, /sub-millisecond/)
  t.equal(parseTimestamp('2023-02-30T00:00:00Z').ok, false)
  t.equal(parseTimestamp('yesterday').ok, false)
  t.equal(parseTimestamp(1.5).ok, false)
  t.equal(parseTimestamp(null).ok, false)
})

t.test('the range is years 1900 to 9999, whatever the year is written as', async (t) => {
  // Date.UTC would read years 0..99 as 1900..1999
  for (const input of ['0000-01-01T00:00:00Z', '0050-06-01T00:00:00Z', '0099-12-31T23:59:59Z', '0123-01-01T00:00:00Z', '1899-12-31T23:59:59Z', '1899-12-31T23:30:00+01:00']) {
    t.same(parseTimestamp(input), { ok: false, message: 'timestamp out of range (years 1900 to 9999)' }, input)
  }
  t.same(parseTimestamp('1899-12-31T23:30:00-01:00'), { ok: true, ms: Date.UTC(1900, 0, 1, 0, 30) }, 'a 1899 local time that is 1900 in UTC')
  t.same(parseTimestamp('1900-01-01T00:00:00Z'), { ok: true, ms: Date.UTC(1900, 0, 1) })
  t.same(parseTimestamp('9999-12-31T23:59:59.999Z'), { ok: true, ms: Date.UTC(9999, 11, 31, 23, 59, 59, 999) })
  t.equal(parseTimestamp('+10000-01-01T00:00:00Z').ok, false)
})

t.test('formatting and durations', async (t) => {
  t.equal(formatTimestamp(Date.UTC(2023, 0, 1)), '2023-01-01T00:00:00.000Z')
  t.same(parseDuration('90m'), { ok: true, ms: 5_400_000 })
  t.equal(parseDuration('1.5h').ok, false)
  t.equal(parseDuration('0s').ok, false)
  t.equal(formatDuration(3_600_000), '1h')
  t.equal(formatDuration(5_400_000), '90m')
  t.equal(formatDuration(1500), '1500ms')
})

t.test('the fast path reads the common forms as the pattern does, and the rest is left to it', async (t) => {
  const read = ['2023-06-01T12:00:00Z', '2023-06-01T12:00:00.123Z', '2023-06-01T12:00:00.1z', '2023-06-01t12:00:00Z', '2023-06-01 12:00:00Z',
    '2023-06-01T12:00:00+00:00', '2023-06-01T14:30:00.25+02:30', '2023-06-01T07:00:00-05:00', '2023-06-01T12:00:00.123000000Z', '2024-02-29T00:00:00Z',
    '1900-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z']
  for (const s of read) {
    t.same(parseTimestamp(s), parseTimestampByPattern(s), s)
    t.equal(commonTimestampMs(s), (parseTimestampByPattern(s) as { ms: number }).ms, `${s}: read by the fast path`)
  }
  const left = ['2023-02-29T00:00:00Z', '1899-12-31T23:59:59Z', '1900-01-01T00:00:00+00:01', '2023-06-01T24:00:00Z', '2023-06-01T12:00:00', '2023-06-01T12:00:00.1234Z',
    '2023-06-01T12:00:00.Z', '2023-06-01T12:00:00+24:00', '2023-06-01T12:00:00+0200', '2023-06-01T12:00:00ZZ', '1685620800000', '-1', 'x'.repeat(24)]
  for (const s of left) {
    t.ok(Number.isNaN(commonTimestampMs(s)), `${s}: left to the pattern`)
    t.same(parseTimestamp(s), parseTimestampByPattern(s), s)
  }
  const date = fc.integer({ min: Date.UTC(1850, 0, 1), max: Date.UTC(9999, 11, 31) }).map((ms) => new Date(ms).toISOString())
  const fraction = fc.constantFrom('', '.', '.1', '.12', '.123', '.1230', '.123000', '.1234', '.000000001', '.0000000000')
  const zone = fc.oneof(fc.constantFrom('Z', 'z', '', '+00:00', '-00:00', '+23:59', '-23:59', '+24:00', '+05:60', '+0530'),
    fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 })).map(([sg, h, m]) => `${sg}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`))
  fc.assert(fc.property(date, fraction, zone, fc.constantFrom('T', 't', ' ', '_'), fc.integer({ min: 0, max: 34 }), fc.constantFrom('', '0', '1', '9', 'Z', ':', '-', '.', '/', ' ', 'T', '+', 'é', '"'), (d, frac, z, sep, at, c) => {
    let s = `${d.slice(0, 10)}${sep}${d.slice(11, 19)}${frac}${z}`
    if (c !== '' && at < s.length) s = s.slice(0, at) + c + s.slice(at + 1)
    const fast = commonTimestampMs(s)
    const pattern = parseTimestampByPattern(s)
    // what the fast path reads, it reads as the pattern does; parseTimestamp answers as the pattern
    if (!Number.isNaN(fast) && !(pattern.ok && pattern.ms === fast)) return false
    if (JSON.stringify(parseTimestamp(s)) !== JSON.stringify(pattern)) return false
    // and the body scanner's byte parser agrees with the string one (latin1: one byte a character)
    // (at the buffer's end, and amid other bytes as in a body)
    const bytes = parseTimestampBytes(Buffer.from(s, 'latin1'), 0, s.length)
    const framed = parseTimestampBytes(Buffer.from(`{"${s}"}`, 'latin1'), 2, 2 + s.length)
    return (Object.is(bytes, fast) || (Number.isNaN(bytes) && Number.isNaN(fast))) && Object.is(framed, bytes)
  }), { numRuns: 20_000 })
})
