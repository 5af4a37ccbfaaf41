/**
 * Namespace tokens as the server parses, issues and stores them, with the server's own error texts (they reach
 * clients in `details.error` and in `ns.create` messages).
 */
import { createHash, randomBytes } from "node:crypto"

/** The namespace a token names, or the server's reason for refusing it. */
export type Parsed = { readonly _tag: "Valid"; readonly namespace: string } | {
  readonly _tag: "Invalid"
  readonly error: string
}

const invalid = (reason: string): Parsed => ({ _tag: "Invalid", error: `invalid token format: ${reason}` })

const base64urlAlphabet = /^[A-Za-z0-9_-]$/

const hexByte = (byte: number): boolean =>
  (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)

// Go's %#U: "U+0067 'g'" for printable characters, "U+0000" for the rest.
const goRune = (code: number): string => {
  const hex = code.toString(16).toUpperCase().padStart(4, "0")
  return code >= 0x20 && code !== 0x7f ? `U+${hex} '${String.fromCodePoint(code)}'` : `U+${hex}`
}

/** Parses a token exactly as the server's `ParseToken` does. */
export const parse = (token: string): Parsed => {
  if (!token.startsWith("ns_")) return invalid("missing 'ns_' prefix")
  const parts = token.slice(3).split("_")
  if (parts.length !== 2) return invalid(`expected 2 parts after prefix, got ${parts.length}`)
  const [encoded, secret] = parts as [string, string]
  const secretBytes = Buffer.from(secret, "utf8")
  if (secretBytes.length !== 64) return invalid(`random part must be 64 hex characters, got ${secretBytes.length}`)
  const bad = secretBytes.findIndex((byte) => !hexByte(byte))
  if (bad !== -1) {
    return invalid(`random part is not valid hexadecimal: encoding/hex: invalid byte: ${goRune(secretBytes[bad]!)}`)
  }
  // Buffer's decoder skips characters outside the alphabet; Go's raw URL decoder refuses them, and a lone last
  // character (length 1 mod 4) too.
  const badChar = [...encoded].findIndex((c) => !base64urlAlphabet.test(c))
  const corruptAt = badChar !== -1 ?
    Buffer.byteLength([...encoded].slice(0, badChar).join("")) :
    encoded.length % 4 === 1
    ? encoded.length - 1
    : -1
  if (corruptAt !== -1) {
    return invalid(`namespace part is not valid base64url: illegal base64 data at input byte ${corruptAt}`)
  }
  const namespace = Buffer.from(encoded, "base64url").toString("utf8")
  return namespace === "" ? invalid("namespace is empty") : { _tag: "Valid", namespace }
}

/** A fresh token for `namespace`: 32 random bytes as the secret. */
export const generate = (namespace: string): string =>
  `ns_${Buffer.from(namespace, "utf8").toString("base64url")}_${randomBytes(32).toString("hex")}`

/** What the server stores instead of a token: hex(sha256(token)). */
export const hash = (token: string): string => createHash("sha256").update(token, "utf8").digest("hex")

/** The `default` namespace's token that the SDK test runners pass with `-token`. */
export const defaultAdminToken = `ns_ZGVmYXVsdA_${"0".repeat(64)}`
