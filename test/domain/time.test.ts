import t from 'tap'
import { parseTimestamp, formatTimestamp, parseDuration, formatDuration } from '../../src/domain/time.js'

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
