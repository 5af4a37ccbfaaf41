/**
 * Message ids as the server checks them: first Go's `uuid.Parse` (whose error becomes "invalid UUID format: ..."),
 * then Postgres' `uuid` input, which is stricter about braces and refuses the `urn:uuid:` form Go accepts.
 */
import { randomBytes } from "node:crypto"

/** The outcome of checking a client-supplied id. */
export type Checked =
  | { readonly _tag: "Valid"; readonly canonical: string }
  | { readonly _tag: "GoRejected"; readonly error: string }
  | { readonly _tag: "PostgresRejected" }

const isHex = (byte: number): boolean =>
  (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)

const hexPairsAt = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]

// Go quotes the urn prefix with %q; for the printable ASCII of real inputs JSON quoting is the same text.
const goQuote = (bytes: Uint8Array): string => JSON.stringify(Buffer.from(bytes).toString("utf8"))

const goParse = (bytes: Uint8Array): string | undefined => {
  let body = bytes
  switch (bytes.length) {
    case 36:
      break
    case 45:
      if (Buffer.from(bytes.subarray(0, 9)).toString("latin1").toLowerCase() !== "urn:uuid:") {
        return `invalid urn prefix: ${goQuote(bytes.subarray(0, 9))}`
      }
      body = bytes.subarray(9)
      break
    case 38:
      // Go drops the first character without looking at it, and never looks at the last.
      body = bytes.subarray(1)
      break
    case 32:
      return bytes.every(isHex) ? undefined : "invalid UUID format"
    default:
      return `invalid UUID length: ${bytes.length}`
  }
  if (body[8] !== 0x2d || body[13] !== 0x2d || body[18] !== 0x2d || body[23] !== 0x2d) return "invalid UUID format"
  return hexPairsAt.every((at) => isHex(body[at]!) && isHex(body[at + 1]!)) ? undefined : "invalid UUID format"
}

// Postgres accepts optional braces around the whole value and hyphens after any group of four digits.
const postgresForm = /^\{?[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}\}?$/

/** Checks an id the way a write does, and gives its canonical lowercase form. */
export const check = (id: string): Checked => {
  const error = goParse(Buffer.from(id, "utf8"))
  if (error !== undefined) return { _tag: "GoRejected", error }
  const braced = id.startsWith("{")
  if (!postgresForm.test(id) || braced !== id.endsWith("}")) return { _tag: "PostgresRejected" }
  const hex = id.replace(/[{}-]/g, "").toLowerCase()
  return {
    _tag: "Valid",
    canonical: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
  }
}

// Random bytes are drawn in blocks: one `randomBytes` call per id costs more than the rest of a write.
let pool = Buffer.alloc(0)
let offset = 0
const random = (count: number): Buffer => {
  if (offset + count > pool.length) {
    pool = randomBytes(4096)
    offset = 0
  }
  offset += count
  return pool.subarray(offset - count, offset)
}

/** A version 7 UUID: 48 bits of Unix milliseconds, then random bits, so ids sort by creation time. */
export const v7 = (millis: number): string => {
  const time = Math.floor(millis).toString(16).padStart(12, "0").slice(-12)
  const bytes = random(10)
  const rest = bytes.toString("hex")
  const variant = (0x8 | (bytes[9]! & 0x3)).toString(16)
  return `${time.slice(0, 8)}-${time.slice(8)}-7${rest.slice(0, 3)}-${variant}${rest.slice(3, 6)}-${rest.slice(6, 18)}`
}
