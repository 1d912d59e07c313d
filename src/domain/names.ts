import { BadRequestError } from './errors.js'

/** Feature, contract and monitor names. */
export const NAME_PATTERN = '^[a-z][a-z0-9_]{0,62}$'
export const NAME_RE = new RegExp(NAME_PATTERN)
/**
 * Entity ids: 1 to 256 printable characters: no control characters, no lone surrogates (which
 * UTF-8 cannot carry) and no U+FFFD, the character that invalid UTF-8 in a request decodes to
 * (two different byte strings would otherwise become one id).
 */
export const ENTITY_ID_RE = /^[^\p{Cc}\p{Cs}\uFFFD]{1,256}$/u

export function entityIdProblem (id: unknown): string | undefined {
  if (typeof id !== 'string') return 'must be a string'
  if (id.length === 0) return 'must not be empty'
  // counted in code points; no string of at most 256 UTF-16 units can have more (and the
  // spread is the costly part of the check)
  if (id.length > 256 && [...id].length > 256) return 'must be at most 256 characters'
  if (!ENTITY_ID_RE.test(id)) {
    if (id.includes('\uFFFD')) return 'contains U+FFFD, the replacement character: the request\'s text was not valid UTF-8 there'
    if (/\p{Cs}/u.test(id)) return 'contains a lone UTF-16 surrogate, which is not a character'
    return 'must contain printable characters only'
  }
  return undefined
}

export function assertName (name: string, what = 'name'): void {
  if (!NAME_RE.test(name)) throw new BadRequestError(`${what} '${name}' is invalid: it must match ${NAME_PATTERN}`, [{ path: what, rule: 'pattern', message: `must match ${NAME_PATTERN}` }])
}
