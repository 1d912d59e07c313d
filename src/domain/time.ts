import type { FieldError } from './errors.js'
/**
 * Timestamps at the API edge: RFC 3339 with a zone (`Z` or an offset) or epoch
 * milliseconds. Millisecond precision; finer non-zero digits are rejected, not rounded.
 * Internally a timestamp is an integer count of epoch milliseconds.
 */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$/

/** Epoch-ms bounds accepted: years 1900..9999. */
export const MIN_TIMESTAMP_MS = Date.UTC(1900, 0, 1)
export const MAX_TIMESTAMP_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999)

export type TimestampResult = { ok: true, ms: number } | { ok: false, message: string }

/**
 * A timestamp query parameter: epoch ms, or undefined when it is absent or does not parse (then
 * its problem is added to `errors`, for one 400 naming every bad parameter).
 */
export function queryTimestamp (value: string | number | undefined, field: string, errors: FieldError[]): number | undefined {
  if (value === undefined) return undefined
  const t = parseTimestamp(value)
  if (t.ok) return t.ms
  errors.push({ path: `/querystring/${field}`, field, rule: 'timestamp', message: t.message })
  return undefined
}

export function parseTimestamp (input: unknown): TimestampResult {
  if (typeof input === 'string') {
    const ms = commonTimestampMs(input)
    if (ms === ms) return { ok: true, ms }
  }
  return parseTimestampByPattern(input)
}

/**
 * parseTimestamp without its fast path: the regular expression for every string, and the
 * messages for what is wrong. The reference the fast path is tested against.
 */
export function parseTimestampByPattern (input: unknown): TimestampResult {
  if (typeof input === 'number') {
    if (!Number.isInteger(input)) return { ok: false, message: 'epoch milliseconds must be an integer' }
    if (input < MIN_TIMESTAMP_MS || input > MAX_TIMESTAMP_MS) return { ok: false, message: 'timestamp out of range (years 1900 to 9999)' }
    return { ok: true, ms: input }
  }
  if (typeof input !== 'string') return { ok: false, message: 'must be an RFC 3339 timestamp with a zone or epoch milliseconds' }
  if (/^-?\d{1,16}$/.test(input)) return parseTimestampByPattern(Number(input))
  const m = RFC3339.exec(input)
  if (!m) return { ok: false, message: `'${truncate(input)}' is not an RFC 3339 timestamp (e.g. 2024-01-31T12:00:00Z) or epoch milliseconds` }
  const [, y, mo, d, h, mi, s, frac, zone] = m
  if (zone === undefined) return { ok: false, message: `'${truncate(input)}' has no time zone: add 'Z' for UTC or an offset such as +02:00` }
  let ms = 0
  if (frac !== undefined) {
    const digits = frac.padEnd(3, '0')
    if (/[1-9]/.test(digits.slice(3))) return { ok: false, message: `'${truncate(input)}' has sub-millisecond precision: at most 3 fractional digits are kept` }
    ms = Number(digits.slice(0, 3))
  }
  const [Y, M, D, H, MI, S] = [y, mo, d, h, mi, s].map(Number)
  // Date.UTC reads years 0..99 as 1900..1999: such years are refused here, before it (1899 can
  // still be in range with a negative offset)
  if (Y < 1899) return { ok: false, message: 'timestamp out of range (years 1900 to 9999)' }
  if (M < 1 || M > 12 || D < 1 || D > daysInMonth(Y, M) || H > 23 || MI > 59 || S > 59) return { ok: false, message: `'${truncate(input)}' is not a valid date and time` }
  let offsetMin = 0
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1
    const oh = Number(zone.slice(1, 3)); const om = Number(zone.slice(4, 6))
    if (oh > 23 || om > 59) return { ok: false, message: `'${truncate(input)}' has an invalid offset` }
    offsetMin = sign * (oh * 60 + om)
  }
  const epoch = Date.UTC(Y, M - 1, D, H, MI, S, ms) - offsetMin * 60_000
  if (epoch < MIN_TIMESTAMP_MS || epoch > MAX_TIMESTAMP_MS) return { ok: false, message: 'timestamp out of range (years 1900 to 9999)' }
  return { ok: true, ms: epoch }
}

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** Whether day d (>= 1) is in month mo (1-12) of Gregorian year y (for the fast paths' years, 1900 on). */
export function dayInMonth (y: number, mo: number, d: number): boolean {
  return d <= MONTH_DAYS[mo - 1] + (mo === 2 && (y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)) ? 1 : 0)
}

/**
 * The epoch ms of a timestamp in the forms clients send, read without the regular expression
 * (~0.1 µs instead of ~1.4 µs): `YYYY-MM-DD[Tt ]HH:MM:SS[.f{1,9}]` then `Z`, `z` or
 * `+HH:MM`/`-HH:MM`, years 1900 on, sub-millisecond digits zeros. NaN for anything else (invalid
 * or another form), which parseTimestampByPattern then reads and explains. For what it reads it
 * gives what the pattern gives (a test checks this). The training-set body reader
 * (parseTimestampBytes, src/domain/training-body.ts) reads toISOString's form from the bytes
 * itself and hands the text of any other timestamp here.
 */
export function commonTimestampMs (s: string): number {
  const n = s.length
  if (n < 20 || n > 35) return Number.NaN
  const sep = s.charCodeAt(10)
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || (sep !== 84 && sep !== 116 && sep !== 32) || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return Number.NaN
  const y = digitPair(s, 0) * 100 + digitPair(s, 2)
  const mo = digitPair(s, 5)
  const d = digitPair(s, 8)
  const h = digitPair(s, 11)
  const mi = digitPair(s, 14)
  const sec = digitPair(s, 17)
  // a pair that is not two digits is NaN, and so is every comparison with it
  if (!(y >= 1900 && mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 && sec <= 59)) return Number.NaN
  if (!dayInMonth(y, mo, d)) return Number.NaN
  let p = 19
  // the fraction: its first 3 digits are the ms; later ones must be zeros
  let ms = 0
  if (s.charCodeAt(p) === 46) {
    p++
    let k = 0
    for (; p < n; p++, k++) {
      const c = (s.charCodeAt(p) - 48) >>> 0
      if (c > 9) break
      if (k < 3) ms = ms * 10 + c
      else if (c !== 0) return Number.NaN
    }
    if (k === 0 || k > 9) return Number.NaN
    if (k === 1) ms *= 100
    else if (k === 2) ms *= 10
  }
  // the zone, to the end
  let offsetMs = 0
  const z = s.charCodeAt(p)
  if (z === 90 || z === 122) {
    if (p + 1 !== n) return Number.NaN
  } else if (z === 43 || z === 45) {
    if (p + 6 !== n || s.charCodeAt(p + 3) !== 58) return Number.NaN
    const oh = digitPair(s, p + 1)
    const om = digitPair(s, p + 4)
    if (!(oh <= 23 && om <= 59)) return Number.NaN
    offsetMs = (oh * 60 + om) * 60_000
    if (z === 45) offsetMs = -offsetMs
  } else return Number.NaN
  const v = Date.UTC(y, mo - 1, d, h, mi, sec, ms) - offsetMs
  return v >= MIN_TIMESTAMP_MS && v <= MAX_TIMESTAMP_MS ? v : Number.NaN
}

/** The two digits at s[at], s[at + 1] as a number; NaN when either is not a digit. */
function digitPair (s: string, at: number): number {
  const a = (s.charCodeAt(at) - 48) >>> 0
  const b = (s.charCodeAt(at + 1) - 48) >>> 0
  return a <= 9 && b <= 9 ? a * 10 + b : Number.NaN
}

function daysInMonth (y: number, m: number): number {
  return new Date(Date.UTC(y, m, 0)).getUTCDate()
}

function truncate (s: string): string {
  return s.length > 64 ? `${s.slice(0, 61)}...` : s
}

/** RFC 3339, UTC, always three fractional digits. */
export function formatTimestamp (ms: number): string {
  return new Date(ms).toISOString()
}

const DURATION_RE = /^(\d{1,12})(ms|s|m|h|d|w)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** Durations such as `500ms`, `90s`, `15m`, `1h`, `7d`, `2w`. Returns milliseconds. */
export function parseDuration (input: unknown): { ok: true, ms: number } | { ok: false, message: string } {
  if (typeof input !== 'string') return { ok: false, message: 'must be a duration such as 90s, 15m, 1h, 7d' }
  const m = DURATION_RE.exec(input)
  if (!m) return { ok: false, message: `'${input}' is not a duration: use a whole number and a unit (ms, s, m, h, d, w), e.g. 1h` }
  const ms = Number(m[1]) * UNIT_MS[m[2]]
  if (ms <= 0) return { ok: false, message: 'duration must be positive' }
  if (ms > 100 * 365 * 86_400_000) return { ok: false, message: 'duration must be at most 100 years' }
  return { ok: true, ms }
}

/** The shortest exact rendering of a millisecond duration. */
export function formatDuration (ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`
  }
  return `${ms}ms`
}
